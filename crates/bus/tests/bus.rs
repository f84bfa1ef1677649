//! The bus against a real nats-server: version gate, typed endpoints that always
//! reply, JetStream dedupe by event id, and a consumer that retries and dead-letters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sigil_bus::consumer::{self, ConsumerSpec, HandleError};
use sigil_bus::service::Router;
use sigil_bus::{Bus, BusError, ClientError};
use sigil_contracts::inventory::GetRequest;
use sigil_contracts::subjects::{self, INVENTORY_GET, Service};
use sigil_contracts::{ErrorCode, WireError};
use sigil_telemetry::Metrics;
use sigil_testkit::{NatsServer, eventually};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(5);

async fn serve_echo(bus: &Bus, shutdown: CancellationToken) {
    let router = Router::new(Service::Inventory, "test").route(
        INVENTORY_GET,
        |req: GetRequest| async move {
            match req.serial.as_str() {
                "boom" => Err(WireError::not_found("no such serial")),
                s => Ok(serde_json::json!({ "echo": s })),
            }
        },
    );
    let bus = bus.clone();
    tokio::spawn(async move { router.serve(&bus, Metrics::new(), shutdown).await.unwrap() });
}

#[tokio::test]
async fn endpoints_reply_with_results_or_typed_errors() {
    let nats = NatsServer::start().await;
    let bus = Bus::connect(&nats.url(), "test").await.unwrap();
    let shutdown = CancellationToken::new();
    serve_echo(&bus, shutdown.clone()).await;

    let ok: serde_json::Value = eventually(T, "endpoint up", || async {
        bus.request(
            INVENTORY_GET,
            &GetRequest {
                serial: "ab".into(),
            },
            T,
        )
        .await
        .ok()
    })
    .await;
    assert_eq!(ok["echo"], "ab");

    let err = bus
        .request::<_, serde_json::Value>(
            INVENTORY_GET,
            &GetRequest {
                serial: "boom".into(),
            },
            T,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Wire(ref e) if e.code == ErrorCode::NotFound),
        "{err:?}"
    );

    // Malformed and oversized bodies get typed errors, not silence.
    for (body, code) in [
        (Bytes::from_static(b"{nope"), ErrorCode::BadRequest),
        (
            Bytes::from_static(br#"{"serial":"a","extra":1}"#),
            ErrorCode::BadRequest,
        ),
        (Bytes::from(vec![b' '; 70 * 1024]), ErrorCode::TooLarge),
    ] {
        let raw = bus.request_raw(INVENTORY_GET, body, T).await.unwrap();
        let reply: sigil_contracts::Reply<serde_json::Value> =
            serde_json::from_slice(&raw).unwrap();
        assert_eq!(reply.into_result().unwrap_err().code, code);
    }

    // Discovery through $SRV.PING.
    let ping = bus
        .client()
        .request("$SRV.PING.sigil-inventory", Bytes::new())
        .await
        .unwrap();
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "sigil-inventory");
    let info = bus
        .client()
        .request("$SRV.INFO.sigil-inventory", Bytes::new())
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, vec!["sigil.inventory.v1.get"]);
    assert_eq!(
        info["endpoints"][0]["queue_group"], "q",
        "replicas share load"
    );
    let stats = bus
        .client()
        .request("$SRV.STATS.sigil-inventory", Bytes::new())
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).unwrap();
    assert!(
        stats["endpoints"][0]["num_requests"].as_u64().unwrap() >= 5,
        "{stats}"
    );

    shutdown.cancel();
    let gone = eventually(T, "endpoint stopped", || async {
        match bus
            .request::<_, serde_json::Value>(
                INVENTORY_GET,
                &GetRequest { serial: "x".into() },
                Duration::from_millis(300),
            )
            .await
        {
            Err(ClientError::NoResponders { .. }) | Err(ClientError::TimedOut { .. }) => Some(()),
            _ => None,
        }
    })
    .await;
    let () = gone;
}

#[tokio::test]
async fn old_servers_are_refused_clearly() {
    // The Debian package on this machine's port 4222 is 2.9.10; if it is there, check
    // the refusal. Elsewhere the check is covered by parse_version's unit test.
    if let Ok(version) = Bus::probe("nats://127.0.0.1:4222").await {
        match Bus::connect("nats://127.0.0.1:4222", "test").await {
            Err(BusError::ServerTooOld { found, .. }) => {
                assert_eq!(found, version);
                assert!(sigil_bus::parse_version(&found).unwrap() < sigil_bus::MIN_SERVER_VERSION);
            }
            Ok(_) => assert!(
                sigil_bus::parse_version(&version).unwrap() >= sigil_bus::MIN_SERVER_VERSION
            ),
            Err(e) => panic!("unexpected: {e}"),
        }
    }
}

#[tokio::test]
async fn duplicate_event_ids_are_stored_once() {
    let nats = NatsServer::start().await;
    let bus = Bus::connect(&nats.url(), "test").await.unwrap();
    let stream = bus.ensure_stream().await.unwrap();
    // Idempotent creation.
    bus.ensure_stream().await.unwrap();
    let subject = format!("{}.identity.issued", subjects::EVENTS_PREFIX);
    for _ in 0..3 {
        bus.publish_event(&subject, "same-id", Bytes::from_static(b"{}"), None)
            .await
            .unwrap();
    }
    bus.publish_event(&subject, "other-id", Bytes::from_static(b"{}"), None)
        .await
        .unwrap();
    let mut stream = stream;
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
}

#[tokio::test]
async fn consumer_retries_then_dead_letters_poison() {
    let nats = NatsServer::start().await;
    let bus = Bus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_stream().await.unwrap();
    let mut dead = bus
        .client()
        .subscribe(subjects::dead_letter_subject("probe"))
        .await
        .unwrap();
    let subject = format!("{}.identity.issued", subjects::EVENTS_PREFIX);
    bus.publish_event(&subject, "flaky", Bytes::from_static(b"flaky"), None)
        .await
        .unwrap();
    bus.publish_event(&subject, "poison", Bytes::from_static(b"poison"), None)
        .await
        .unwrap();
    bus.publish_event(&subject, "good", Bytes::from_static(b"good"), None)
        .await
        .unwrap();

    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let flaky_attempts = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let mut spec = ConsumerSpec::new("probe", vec![subject.clone()]);
    spec.retry_delay = Duration::from_millis(50);
    spec.max_deliver = 3;
    let (s2, f2, b2, sd) = (
        seen.clone(),
        flaky_attempts.clone(),
        bus.clone(),
        shutdown.clone(),
    );
    let task = tokio::spawn(async move {
        consumer::run(b2, spec, Metrics::new(), sd, move |d| {
            let seen = s2.clone();
            let flaky = f2.clone();
            async move {
                let body = String::from_utf8_lossy(&d.payload).to_string();
                match body.as_str() {
                    "flaky" if flaky.fetch_add(1, Ordering::SeqCst) == 0 => {
                        Err(HandleError::Retry("not yet".into()))
                    }
                    "poison" => Err(HandleError::Poison("cannot decode".into())),
                    _ => {
                        seen.lock().unwrap().push(body);
                        Ok(())
                    }
                }
            }
        })
        .await
    });

    let dl = tokio::time::timeout(T, dead.next()).await.unwrap().unwrap();
    assert_eq!(&dl.payload[..], b"poison");
    assert!(
        dl.headers
            .unwrap()
            .get("Sigil-Dead-Letter-Reason")
            .is_some()
    );
    eventually(T, "flaky and good processed", || async {
        let s = seen.lock().unwrap().clone();
        (s.contains(&"flaky".to_owned()) && s.contains(&"good".to_owned())).then_some(())
    })
    .await;
    assert_eq!(flaky_attempts.load(Ordering::SeqCst), 2);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// A NATS URL's user and password are sent (async-nats does not take them from the
/// URL by itself), a wrong password is refused, and no message shows the password.
#[tokio::test]
async fn credentials_in_the_url_authenticate_and_are_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "port: {port}\njetstream {{ store_dir: {:?} }}\nauthorization {{ users: [ {{ user: svc, password: \"p4ss-w0rd\" }} ] }}\n",
            dir.path().join("js")
        ),
    )
    .unwrap();
    let mut server = std::process::Command::new(sigil_testkit::nats_server_binary())
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let good = format!("nats://svc:p4ss-w0rd@127.0.0.1:{port}");
    let bus = eventually(T, "the server with authorization is up", || async {
        Bus::connect(&good, "auth-test").await.ok()
    })
    .await;
    assert!(!bus.url().contains("p4ss-w0rd"), "{}", bus.url());
    assert!(Bus::probe(&good).await.is_ok());

    let bad = format!("nats://svc:wrong-secret@127.0.0.1:{port}");
    let err = Bus::probe(&bad).await.unwrap_err().to_string();
    assert!(err.contains("authorization"), "{err}");
    assert!(!err.contains("wrong-secret"), "{err}");
    let unnamed = format!("nats://127.0.0.1:{port}");
    assert!(Bus::probe(&unnamed).await.is_err());
    server.kill().unwrap();
    server.wait().unwrap();
}

/// An endpoint whose request carries a proof gets the digest of the body as received
/// (RFC 8785 canonical JSON without `proof`), not of a re-serialization: a client that
/// orders keys its own way, spaces them, or leaves defaults out is checked against
/// exactly what it sent. A body that does not parse never reaches the handler.
#[tokio::test]
async fn proven_endpoints_get_the_digest_of_the_bytes_received() {
    use sigil_contracts::auth::{CarriesProof, request_digest};
    use sigil_contracts::revocation::RevokeRequest;
    use sigil_contracts::subjects::REVOCATION_REVOKE;

    let nats = NatsServer::start().await;
    let bus = Bus::connect(&nats.url(), "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let router = Router::new(Service::Revocation, "test").route_proven(
        REVOCATION_REVOKE,
        |req: RevokeRequest, digest: String| async move {
            Ok(serde_json::json!({ "digest": digest, "typed": req.digest() }))
        },
    );
    let server = bus.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move { router.serve(&server, Metrics::new(), stop).await.unwrap() });

    let body = br#" { "reason" : "key-compromise",
        "proof": {"type": "token", "token": "t"}, "serial": "0A:1b" } "#;
    let reply: serde_json::Value = eventually(T, "endpoint up", || async {
        let raw = bus
            .request_raw(REVOCATION_REVOKE, Bytes::from_static(body), T)
            .await
            .ok()?;
        serde_json::from_slice(&raw).ok()
    })
    .await;
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    let expected = request_digest(value).unwrap();
    assert_eq!(reply["ok"]["digest"], expected.as_str(), "{reply}");
    // The same request as serde sends it has the same digest.
    assert_eq!(reply["ok"]["typed"], expected.as_str());

    // An unknown field is refused before any digest or handler.
    let raw = bus
        .request_raw(
            REVOCATION_REVOKE,
            Bytes::from_static(br#"{"serial":"0a","reason":"key-compromise","extra":1}"#),
            T,
        )
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    shutdown.cancel();
}
