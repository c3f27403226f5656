//! Backup under load: a backup of a store big enough to take seconds runs while clients write
//! messages and a receiver takes deliveries. `/api/v1/health` keeps answering quickly throughout
//! (the issue's target: p99 under 100 ms), deliveries go on, and the copy restores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::receiver::{Answer, Receiver};
use crate::support::{bearer, call, fast_delivery_env, http, Herald, Launch};

/// Messages seeded before the backup, and the size of each payload: about 300 MB. The payloads
/// are in the payload log, copied file by file (a third of a second per 200 MB here), so the
/// backup takes long enough for a stall to show in the health polls.
const SEED_MESSAGES: usize = 3000;
const SEED_PAYLOAD_BYTES: usize = 96 * 1024;
/// Concurrent clients creating messages during the backup, and the most each sends.
const WRITERS: usize = 3;
const WRITES_EACH: usize = 3000;
const HEALTH_EVERY: Duration = Duration::from_millis(20);

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    took: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// POST a message (raw JSON); the message id.
async fn create(client: &reqwest::Client, h_api: &str, body: String) -> String {
    let resp = client
        .post(h_api)
        .header("authorization", bearer())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_stays_fast_and_deliveries_go_on_while_a_backup_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start(Answer::Status(200)).await;
    let mut h = Herald::launch(&Launch {
        env: fast_delivery_env(),
        ..Launch::new(&data)
    })
    .unwrap();

    // The bulk: an application without endpoints, so seeding costs no deliveries.
    let (_, bulk) = call(&h, "POST", "/app", Some(r#"{"name":"bulk","uid":"bulk"}"#)).await;
    let bulk = bulk["id"].as_str().unwrap().to_string();
    let blob = "x".repeat(SEED_PAYLOAD_BYTES);
    let seeded = Arc::new(Mutex::new(Vec::new()));
    let mut seeders = Vec::new();
    for w in 0..8 {
        let (url, blob, seeded) = (
            h.api(&format!("/app/{bulk}/msg")),
            blob.clone(),
            seeded.clone(),
        );
        seeders.push(tokio::spawn(async move {
            let client = http();
            for i in (w..SEED_MESSAGES).step_by(8) {
                let body =
                    format!(r#"{{"eventType":"bulk.seed","payload":{{"i":{i},"blob":"{blob}"}}}}"#);
                let id = create(&client, &url, body).await;
                seeded.lock().unwrap().push(id);
            }
        }));
    }
    for s in seeders {
        s.await.unwrap();
    }
    let seeded = std::mem::take(&mut *seeded.lock().unwrap());

    // The live application: one endpoint at a real receiver.
    let (_, live) = call(&h, "POST", "/app", Some(r#"{"name":"live"}"#)).await;
    let live = live["id"].as_str().unwrap().to_string();
    let ep = format!(r#"{{"url":"{}/hook"}}"#, receiver.url);
    let (status, _) = call(&h, "POST", &format!("/app/{live}/endpoint"), Some(&ep)).await;
    assert_eq!(status, 201);

    let stop = Arc::new(AtomicBool::new(false));
    // (sent at, took, id) of every acknowledged create.
    let writes = Arc::new(Mutex::new(Vec::<(Instant, Duration, String)>::new()));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (url, stop, writes) = (
            h.api(&format!("/app/{live}/msg")),
            stop.clone(),
            writes.clone(),
        );
        writers.push(tokio::spawn(async move {
            let client = http();
            for i in 0..WRITES_EACH {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let at = Instant::now();
                let body = format!(r#"{{"eventType":"live.load","payload":{{"w":{w},"i":{i}}}}}"#);
                let id = create(&client, &url, body).await;
                writes.lock().unwrap().push((at, at.elapsed(), id));
            }
        }));
    }
    let health = {
        let (url, stop) = (h.api("/health"), stop.clone());
        tokio::spawn(async move {
            let client = http();
            let mut samples = Vec::new();
            // Bounded: at most ten minutes of polls.
            while !stop.load(Ordering::Relaxed) && samples.len() < 30_000 {
                let at = Instant::now();
                let status = client.get(&url).send().await.unwrap().status().as_u16();
                assert_eq!(status, 204, "health during the backup");
                samples.push(Sample {
                    at,
                    took: at.elapsed(),
                });
                tokio::time::sleep_until((at + HEALTH_EVERY).into()).await;
            }
            samples
        })
    };

    tokio::time::sleep(Duration::from_millis(500)).await;
    // Backups go to `backups` beside the data directory.
    let dest = dir.path().join("backups/backup");
    let started = Instant::now();
    let resp = http()
        .post(h.api("/admin/backup"))
        .header("authorization", bearer())
        .json(&serde_json::json!({ "name": "backup" }))
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .unwrap();
    let ended = Instant::now();
    let status = resp.status().as_u16();
    let report: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{report}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let samples = health.await.unwrap();

    let took = ended - started;
    let during: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.at >= started && s.at <= ended)
        .collect();
    let mut lat: Vec<Duration> = during.iter().map(|s| s.took).collect();
    lat.sort();
    let mut calm: Vec<Duration> = samples
        .iter()
        .filter(|s| s.at < started)
        .map(|s| s.took)
        .collect();
    calm.sort();
    let writes = std::mem::take(&mut *writes.lock().unwrap());
    let longest_write = writes
        .iter()
        .filter(|(at, took, _)| *at <= ended && *at + *took >= started)
        .map(|(_, took, _)| *took)
        .max()
        .unwrap_or_default();
    let longest_write_before = writes
        .iter()
        .filter(|(at, took, _)| *at + *took < started)
        .map(|(_, took, _)| *took)
        .max()
        .unwrap_or_default();
    let writes_during = writes
        .iter()
        .filter(|(at, took, _)| *at + *took >= started && *at + *took <= ended)
        .count();
    let delivered_during = receiver
        .received()
        .iter()
        .filter(|r| r.at >= started && r.at <= ended)
        .count();
    eprintln!(
        "backup: {report}; took {:.0} ms; health polls before it: {}, p50 {:.1} ms, max {:.1} ms; \
         during it: {}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         writes acknowledged during it: {writes_during}, longest write overlapping it: {:.1} ms \
         (before it: {:.1} ms); deliveries during it: {delivered_during}",
        ms(took),
        calm.len(),
        ms(percentile(&calm, 0.5)),
        ms(*calm.last().unwrap()),
        lat.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap()),
        ms(longest_write),
        ms(longest_write_before),
    );
    assert!(
        took >= Duration::from_millis(250),
        "the store is too small for the backup to take long enough to matter ({took:?})"
    );
    // The target is 100 ms. A busy shared machine (CI beside other builds) slows every poll, so
    // the bound adds twice the slowest poll seen before the backup began; a stall (the old
    // backup held every writer, and with them the runtime, for the whole copy: 1.6 s) still fails.
    let bound = Duration::from_millis(100) + 2 * *calm.last().unwrap();
    assert!(
        percentile(&lat, 0.99) < bound,
        "health p99 during the backup: {:?} (bound {bound:?})",
        percentile(&lat, 0.99)
    );
    // A poll is due every HEALTH_EVERY: a stalled server answers far fewer of them. The bound is
    // half of those due (at least 10), since a fast backup is over in a dozen polls.
    let due = (took.as_millis() / HEALTH_EVERY.as_millis()) as usize;
    assert!(
        lat.len() >= (due / 2).max(10),
        "health was polled {} times during the backup ({due} were due)",
        lat.len()
    );
    assert!(
        delivered_during > 0,
        "no delivery arrived during the backup"
    );

    // Restore: a server on the copy, with the same main key, holds what was acknowledged before.
    assert!(h.terminate().success());
    let key = std::fs::read_to_string(data.join("main.key"))
        .unwrap()
        .trim()
        .to_string();
    let r = Herald::launch(&Launch {
        env: vec![("HERALD_MAIN_KEY", key)],
        ..Launch::new(&dest)
    })
    .unwrap();
    let before: Vec<&String> = writes
        .iter()
        .filter(|(at, took, _)| *at + *took < started)
        .map(|(_, _, id)| id)
        .collect();
    assert!(!before.is_empty(), "writes ran before the backup");
    let sample = seeded.iter().step_by(97).chain(seeded.last());
    for (app, id) in sample
        .map(|id| (&bulk, id))
        .chain(before.into_iter().map(|id| (&live, id)))
    {
        let (status, m) = call(&r, "GET", &format!("/app/{app}/msg/{id}"), None).await;
        assert_eq!(status, 200, "{id} missing from the backup: {m}");
    }
    let (status, m) = call(&r, "GET", &format!("/app/{bulk}/msg/{}", seeded[0]), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        m["payload"]["blob"].as_str().map(str::len),
        Some(SEED_PAYLOAD_BYTES)
    );
}
