//! `sigil events`: print Sigil's events as CloudEvents JSON lines.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use clap::Args;
use futures::StreamExt;
use sigil_bus::BusError;
use sigil_contracts::subjects::{EVENTS_ALL, EVENTS_PREFIX, EVENTS_STREAM};

use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::output;

/// Without --follow, how long to wait for the next stored event before giving up.
const IDLE: Duration = Duration::from_secs(5);
/// Prefix of the CLI's consumer names (see [`consumer_name`]).
pub const CONSUMER_PREFIX: &str = "cli-";

/// Print events, one CloudEvents JSON object per line.
///
/// Without --follow, prints the events stored so far and exits. With --follow, prints
/// new events as they arrive until interrupted; add --since-start to print the stored
/// ones first.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Keep printing new events as they arrive
    #[arg(long)]
    pub follow: bool,

    /// With --follow, start from the first stored event instead of the next new one
    #[arg(long)]
    pub since_start: bool,

    /// Only events on this subject, e.g. identity.revoked or 'identity.>'
    #[arg(long, value_name = "FILTER", default_value = EVENTS_ALL)]
    pub subject: String,
}

pub async fn run(global: &GlobalArgs, args: EventsArgs) -> Result<(), CliError> {
    let bus = global.connect().await?;
    let js_err = |what: &str, e: &dyn std::fmt::Display| {
        CliError::Bus(BusError::JetStream(format!("{what}: {e}")))
    };
    let stream = bus
        .jetstream()
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| js_err(&format!("stream {EVENTS_STREAM} (is Sigil running?)"), &e))?;
    let config = pull::OrderedConfig {
        name: Some(consumer_name()),
        filter_subject: subject_filter(&args.subject),
        deliver_policy: deliver_policy(&args),
        ..Default::default()
    };
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| js_err("consumer", &e))?;
    if !args.follow && consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| js_err("consumer", &e))?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            n = next_message(&mut messages, args.follow) => n,
        };
        let msg = match next {
            None => return Ok(()),
            Some(Err(e)) => return Err(js_err("reading events", &e)),
            Some(Ok(msg)) => msg,
        };
        match event_line(&msg.payload) {
            Some(line) => output::print(&line)?,
            None => eprintln!("sigil: skipping a non-JSON message on {}", msg.subject),
        }
        if !args.follow && msg.info().map(|i| i.pending == 0).unwrap_or(false) {
            return Ok(());
        }
    }
}

async fn next_message<S: futures::Stream + Unpin>(
    messages: &mut S,
    follow: bool,
) -> Option<S::Item> {
    if follow {
        messages.next().await
    } else {
        tokio::time::timeout(IDLE, messages.next())
            .await
            .ok()
            .flatten()
    }
}

/// A fresh name for this run's ordered consumer: `cli-<random>`, one NATS subject
/// token. Named rather than server-named so the consumers the CLI makes can be told
/// from the services' durable ones (`nats consumer ls`, the NATS permissions of the
/// `operator` user in deploy/nats/nats-server.conf); random so that two `sigil events`
/// running at once never share one (they would split the events between them).
pub fn consumer_name() -> String {
    format!("{CONSUMER_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// Where to start: the stored events, unless following only what comes next.
pub fn deliver_policy(args: &EventsArgs) -> DeliverPolicy {
    if args.follow && !args.since_start {
        DeliverPolicy::New
    } else {
        DeliverPolicy::All
    }
}

/// A subject filter as typed, under the events prefix: `identity.revoked` and
/// `sigil.events.v1.identity.revoked` mean the same; `>` means every event.
pub fn subject_filter(input: &str) -> String {
    let input = input.trim();
    let prefix = format!("{EVENTS_PREFIX}.");
    if input.is_empty() || input == ">" || input == EVENTS_PREFIX {
        EVENTS_ALL.to_owned()
    } else if input.starts_with(&prefix) {
        input.to_owned()
    } else {
        format!("{prefix}{input}")
    }
}

/// One output line for an event payload: the JSON as published when it is already a
/// single line, else re-encoded compactly. `None` when the payload is not JSON.
pub fn event_line(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let text = match std::str::from_utf8(payload) {
        Ok(s) if !s.contains(['\n', '\r']) => s.trim().to_owned(),
        _ => serde_json::to_string(&value).ok()?,
    };
    Some(format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> EventsArgs {
        let cli =
            Cli::try_parse_from(std::iter::once("sigil").chain(args.iter().copied())).unwrap();
        match cli.command {
            Command::Events(a) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn options_choose_where_to_start() {
        let a = parse(&["events"]);
        assert!(!a.follow && !a.since_start);
        assert_eq!(a.subject, EVENTS_ALL);
        assert_eq!(deliver_policy(&a), DeliverPolicy::All);
        assert_eq!(
            deliver_policy(&parse(&["events", "--follow"])),
            DeliverPolicy::New
        );
        assert_eq!(
            deliver_policy(&parse(&["events", "--follow", "--since-start"])),
            DeliverPolicy::All
        );
        assert_eq!(
            parse(&["events", "--subject", "identity.revoked"]).subject,
            "identity.revoked"
        );
    }

    #[test]
    fn each_run_names_its_own_consumer_in_one_subject_token() {
        let (a, b) = (consumer_name(), consumer_name());
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.starts_with(CONSUMER_PREFIX), "{name}");
            assert!(
                name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'),
                "{name} must be a single NATS token"
            );
        }
    }

    #[test]
    fn subject_filters_live_under_the_events_prefix() {
        assert_eq!(
            subject_filter("identity.revoked"),
            "sigil.events.v1.identity.revoked"
        );
        assert_eq!(subject_filter("identity.>"), "sigil.events.v1.identity.>");
        assert_eq!(
            subject_filter("sigil.events.v1.identity.issued"),
            "sigil.events.v1.identity.issued"
        );
        assert_eq!(subject_filter(">"), EVENTS_ALL);
        assert_eq!(subject_filter(""), EVENTS_ALL);
        assert_eq!(subject_filter(EVENTS_ALL), EVENTS_ALL);
    }

    #[test]
    fn each_event_is_one_json_line() {
        let compact = br#"{"specversion":"1.0","id":"1","type":"io.sigil.identity.revoked.v1"}"#;
        assert_eq!(
            event_line(compact).unwrap(),
            format!("{}\n", std::str::from_utf8(compact).unwrap())
        );
        let pretty = b"{\n  \"id\": \"1\",\n  \"data\": {\"a\": 1}\n}";
        let line = event_line(pretty).unwrap();
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["data"]["a"], 1);
        assert_eq!(event_line(b"not json"), None);
    }
}
