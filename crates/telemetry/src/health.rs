//! Readiness of the components a process runs.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

/// Per-component readiness, shared by the services of one process.
///
/// A component [`register`](Health::register)s itself as not ready when it starts, and
/// flips to ready once it can serve (database migrated, NATS connected, consumers
/// bound). The process is ready when every registered component is. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Health {
    components: Arc<RwLock<BTreeMap<String, bool>>>,
}

/// A snapshot of readiness, as served by `GET /readyz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// Whether every registered component is ready.
    pub ready: bool,
    /// Each registered component and whether it is ready.
    pub components: BTreeMap<String, bool>,
}

impl Health {
    /// An empty registry: with no components, the process counts as ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `component` as not ready (or marks it not ready again if already known).
    pub fn register(&self, component: &str) {
        self.set_ready(component, false);
    }

    /// Sets whether `component` is ready, registering it if needed.
    pub fn set_ready(&self, component: &str, ready: bool) {
        self.components
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(component.to_owned(), ready);
    }

    /// Whether every registered component is ready.
    pub fn is_ready(&self) -> bool {
        self.components
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .all(|ready| *ready)
    }

    /// The readiness of every component.
    pub fn report(&self) -> HealthReport {
        let components = self
            .components
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        HealthReport {
            ready: components.values().all(|ready| *ready),
            components,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_component_is() {
        let health = Health::new();
        assert!(health.is_ready());
        health.register("issuer");
        health.register("inventory");
        let other = health.clone();
        other.set_ready("issuer", true);
        assert!(!health.is_ready());
        other.set_ready("inventory", true);
        assert!(health.is_ready());
        health.register("issuer");
        let report = health.report();
        assert!(!report.ready);
        assert_eq!(report.components.get("issuer"), Some(&false));
        assert_eq!(report.components.get("inventory"), Some(&true));
    }
}
