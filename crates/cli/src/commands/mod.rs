//! The client-side commands, one module each, and the value parsers they share.

pub mod audit;
pub mod bench;
pub mod ca;
pub mod csr;
pub mod events;
pub mod issue;
pub mod ls;
pub mod policy;
pub mod renew;
pub mod revoke;
pub mod serve;
pub mod show;
pub mod token;
pub mod up;
pub mod verify;

use std::net::IpAddr;
use std::time::Duration;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde::de::DeserializeOwned;
use sigil_contracts::types::Sans;

/// Timeout of a request/reply call.
pub const REQUEST_TIMEOUT: Duration = sigil_bus::DEFAULT_REQUEST_TIMEOUT;

/// The names a certificate is for (`issue`, `csr`).
#[derive(Debug, Clone, Default, Args)]
pub struct NameArgs {
    /// DNS name (repeatable)
    #[arg(long, value_name = "NAME")]
    pub dns: Vec<String>,

    /// IP address (repeatable)
    #[arg(long, value_name = "IP")]
    pub ip: Vec<IpAddr>,

    /// URI, e.g. a SPIFFE ID (repeatable)
    #[arg(long, value_name = "URI")]
    pub uri: Vec<String>,
}

impl NameArgs {
    pub fn sans(&self) -> Sans {
        Sans {
            dns: self.dns.clone(),
            ip: self.ip.clone(),
            uri: self.uri.clone(),
        }
    }
}

/// A parser for a wire enum (`key-compromise`, `tls-server`, …): accepts exactly
/// `names` (listed in `--help` and in errors) and decodes them as the wire does.
pub fn wire_enum<T>(names: Vec<&'static str>) -> impl TypedValueParser<Value = T>
where
    T: DeserializeOwned + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(names)
        .try_map(|name| serde_json::from_value::<T>(serde_json::Value::String(name)))
}

/// A positive human duration such as `24h`, `7d` or `90m`, to whole seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (use e.g. 30m, 24h, 7d)"))?;
    if d.as_secs() == 0 {
        return Err("must be at least 1s".to_owned());
    }
    if i64::try_from(d.as_secs()).is_err() {
        return Err("is too long".to_owned());
    }
    Ok(Duration::from_secs(d.as_secs()))
}

/// Whole seconds of a duration accepted by [`parse_duration`].
pub fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_people_write_them() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            parse_duration("1h 30m").unwrap(),
            Duration::from_secs(5_400)
        );
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("500ms").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(seconds(Duration::from_secs(60)), 60);
    }
}
