// snippets.js — owns the "verify a delivery" code shown beside the signing secret: Python, Node,
// Go, Ruby and PHP with the Standard Webhooks libraries, and a curl + openssl command that sends
// the customer's endpoint a request signed the way ours are. The secret itself is never put in a
// snippet: they read WEBHOOK_SECRET from the environment.

import { h, newId, copyText, toast } from '/js/ui.js';

const shellQuote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

const SNIPPETS = [
  ['Python', 'pip install standardwebhooks', () => `import os
from standardwebhooks import Webhook

wh = Webhook(os.environ["WEBHOOK_SECRET"])  # whsec_...

def handle(request):
    # The raw body exactly as received: re-serialised JSON would not match the signature.
    event = wh.verify(request.get_data(), dict(request.headers))  # raises if the signature is wrong
    print(event["type"])
    return "", 204`],
  ['Node', 'npm install standardwebhooks', () => `import { Webhook } from "standardwebhooks";

const wh = new Webhook(process.env.WEBHOOK_SECRET); // whsec_...

// Express: express.raw({ type: "application/json" }) keeps the body exactly as received.
app.post("/webhooks", express.raw({ type: "application/json" }), (req, res) => {
  try {
    const event = wh.verify(req.body.toString("utf8"), req.headers);
    console.log(event.type);
    res.sendStatus(204);
  } catch (err) {
    res.sendStatus(400); // not signed by us, or replayed
  }
});`],
  ['Go', 'go get github.com/standard-webhooks/standard-webhooks/libraries', () => `import (
	"io"
	"net/http"
	"os"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func webhooks(w http.ResponseWriter, r *http.Request) {
	wh, err := standardwebhooks.NewWebhook(os.Getenv("WEBHOOK_SECRET")) // whsec_...
	if err != nil {
		http.Error(w, "bad secret", http.StatusInternalServerError)
		return
	}
	payload, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	if err := wh.Verify(payload, r.Header); err != nil {
		http.Error(w, "bad signature", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}`],
  ['Ruby', 'gem install standardwebhooks', () => `require "standardwebhooks"

WH = StandardWebhooks::Webhook.new(ENV.fetch("WEBHOOK_SECRET")) # whsec_...

# Rails: the raw body and the three signature headers.
def webhooks
  event = WH.verify(request.raw_post, {
    "webhook-id" => request.headers["webhook-id"],
    "webhook-timestamp" => request.headers["webhook-timestamp"],
    "webhook-signature" => request.headers["webhook-signature"],
  }) # raises if the signature is wrong
  head :no_content
end`],
  ['PHP', 'composer require standard-webhooks/standard-webhooks', () => `<?php
$wh = new \\StandardWebhooks\\Webhook(getenv('WEBHOOK_SECRET')); // whsec_...

$payload = file_get_contents('php://input'); // the raw body
$headers = [
    'webhook-id' => $_SERVER['HTTP_WEBHOOK_ID'] ?? '',
    'webhook-timestamp' => $_SERVER['HTTP_WEBHOOK_TIMESTAMP'] ?? '',
    'webhook-signature' => $_SERVER['HTTP_WEBHOOK_SIGNATURE'] ?? '',
];
try {
    $event = $wh->verify($payload, $headers);
    http_response_code(204);
} catch (Exception $e) {
    http_response_code(400); // not signed by us, or replayed
}`],
  ['curl', 'Needs openssl, base64 and od: sends your endpoint a request signed as ours are, to test your check.', (url) => `SECRET="$WEBHOOK_SECRET"   # whsec_...
ID="msg_test_$(date +%s)"; TS="$(date +%s)"
BODY='{"type":"herald.test","timestamp":"2026-01-01T00:00:00Z","data":{}}'
KEY="$(printf '%s' "\${SECRET#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \\n')"
SIG="$(printf '%s.%s.%s' "$ID" "$TS" "$BODY" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY" -binary | base64)"
curl -i ${shellQuote(url)} -H 'content-type: application/json' \\
  -H "webhook-id: $ID" -H "webhook-timestamp: $TS" -H "webhook-signature: v1,$SIG" \\
  --data-raw "$BODY"`],
];

/** The card: a tab per language (arrow keys move between them), its install line and code. */
export function verifyCard(endpointUrl) {
  const panelId = newId('snip');
  const install = h('p', { class: 'snippet-install muted' });
  const code = h('pre', { class: 'pre snippet', id: panelId, role: 'tabpanel', tabindex: '0', 'data-testid': 'snippet' });
  let chosen = 0;
  const tabs = SNIPPETS.map(([name], i) => h('button', { type: 'button', role: 'tab', class: 'btn btn-small', 'aria-controls': panelId,
    'data-testid': `lang:${name}`, onclick: () => select(i),
    onkeydown: (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      e.preventDefault();
      select((i + step + SNIPPETS.length) % SNIPPETS.length);
      tabs[chosen].focus();
    } }, name));
  function select(i) {
    chosen = i;
    const [, how, text] = SNIPPETS[i];
    tabs.forEach((t, j) => {
      t.setAttribute('aria-selected', String(j === i));
      t.tabIndex = j === i ? 0 : -1;
    });
    install.replaceChildren(i === SNIPPETS.length - 1 ? how : h('code', null, how));
    code.textContent = text(endpointUrl);
  }
  select(0);
  const copy = h('button', { type: 'button', class: 'btn btn-small', onclick: async () => {
    toast((await copyText(code.textContent)) ? 'Code copied.' : 'Copy failed: select the code and copy it by hand.');
  } }, 'Copy code');
  return h('section', { class: 'card', 'data-section': 'verify' },
    h('h2', null, 'Verify our signature'),
    h('p', { class: 'muted' }, 'Every delivery is signed with the endpoint’s secret (Standard Webhooks). Check it before trusting a request: put the secret in WEBHOOK_SECRET.'),
    h('div', { class: 'snippet-tabs', role: 'tablist', 'aria-label': 'Language' }, tabs),
    install, code, h('div', { class: 'actions' }, copy));
}
