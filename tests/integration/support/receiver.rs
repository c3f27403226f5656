//! A real HTTP receiver on 127.0.0.1:0 for delivery tests: records every request and answers from
//! a script (then a default), e.g. 500, 503 with Retry-After, a hang, 410, 200.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use warp::http::{HeaderMap, Response};
use warp::Filter;

#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    /// Status, then a `Retry-After` value in seconds.
    RetryAfter(u16, u64),
    /// Answer 200 only after this long (longer than the request timeout: a hang).
    Delay(Duration),
    /// Status with this body.
    Body(u16, String),
    /// 302 to this location.
    Redirect(String),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Answer>>,
    default: Mutex<Option<Answer>>,
}

pub struct Receiver {
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Start answering `default` (after any scripted answers).
    pub async fn start(default: Answer) -> Receiver {
        let state = Arc::new(State::default());
        *state.default.lock().unwrap() = Some(default);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let s = state.clone();
        let route = warp::any()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |path: warp::path::FullPath, headers: HeaderMap, body: bytes::Bytes| {
                    let s = s.clone();
                    async move {
                        s.received.lock().unwrap().push(Received {
                            path: path.as_str().to_string(),
                            headers,
                            body: body.to_vec(),
                            at: Instant::now(),
                        });
                        let answer = s
                            .script
                            .lock()
                            .unwrap()
                            .pop_front()
                            .or_else(|| s.default.lock().unwrap().clone())
                            .unwrap_or(Answer::Status(200));
                        let (status, body, retry_after) = match answer {
                            Answer::Status(c) => (c, String::from("ok"), None),
                            Answer::RetryAfter(c, secs) => (c, String::from("later"), Some(secs)),
                            Answer::Delay(d) => {
                                tokio::time::sleep(d).await;
                                (200, String::from("late"), None)
                            }
                            Answer::Body(c, b) => (c, b, None),
                            Answer::Redirect(to) => {
                                let resp = Response::builder().status(302).header("location", to);
                                return resp.body(String::from("moved")).unwrap();
                            }
                        };
                        let mut resp = Response::builder().status(status);
                        if let Some(secs) = retry_after {
                            resp = resp.header("retry-after", secs.to_string());
                        }
                        resp.body(body).unwrap()
                    }
                },
            );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let svc = TowerToHyperService::new(warp::service(route.clone()));
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { url, state, task }
    }

    /// Queue answers to give before the default.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.script.lock().unwrap().extend(answers);
    }

    pub fn set_default(&self, answer: Answer) {
        *self.state.default.lock().unwrap() = Some(answer);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Wait (bounded) until `pred` holds for what was received; panics with what arrived if not.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            if Instant::now() > deadline {
                let paths: Vec<_> = got.iter().map(|r| r.path.clone()).collect();
                panic!(
                    "timed out waiting for {what}; received {} requests: {paths:?}",
                    got.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(&format!("{n} requests"), timeout, |r| r.len() >= n)
            .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Poll `f` until it returns `Some`, at most `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
