// theme.js — owns the portal's colour theme before the first paint (a classic script, so no
// flash of the wrong theme): `?theme=light|dark` in the page's address (an operator embedding
// the portal matches it to their product), else the system's prefers-color-scheme, followed live.
// Unlike the admin UI nothing is remembered: the embedding page decides.
(function () {
  var media = window.matchMedia('(prefers-color-scheme: dark)');
  var forced = new URLSearchParams(window.location.search).get('theme');
  if (forced !== 'light' && forced !== 'dark') forced = null;
  function apply() {
    var dark = forced ? forced === 'dark' : media.matches;
    document.documentElement.setAttribute('data-theme', dark ? 'dark' : 'light');
  }
  apply();
  media.addEventListener('change', apply);
})();
