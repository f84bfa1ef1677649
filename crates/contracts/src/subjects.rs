//! NATS subjects and stream names. Every subject Sigil uses is built here from a
//! handful of prefixes, so no handler carries a subject string literal.

use crate::event::EventKind;

/// The JetStream stream holding every Sigil event.
pub const EVENTS_STREAM: &str = "SIGIL_EVENTS";
/// Prefix of every event subject; the stream captures `sigil.events.v1.>`.
pub const EVENTS_PREFIX: &str = "sigil.events.v1";
/// Subject filter that matches every event.
pub const EVENTS_ALL: &str = "sigil.events.v1.>";
/// Prefix of every request/reply subject.
pub const SERVICE_PREFIX: &str = "sigil";
/// Contract version of the request/reply endpoints.
pub const SERVICE_VERSION: &str = "v1";
/// Dead-letter subject prefix for events a consumer gave up on (outside the stream).
pub const DEAD_LETTER_PREFIX: &str = "sigil.deadletter.v1";

/// The five services, as named in subjects and micro-service discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Issuer,
    Inventory,
    RotationScheduler,
    Revocation,
    Policy,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 5] = [
        Service::Issuer,
        Service::Inventory,
        Service::RotationScheduler,
        Service::Revocation,
        Service::Policy,
    ];

    /// Name used in subjects, micro-service names and logs.
    pub fn name(self) -> &'static str {
        match self {
            Service::Issuer => "issuer",
            Service::Inventory => "inventory",
            Service::RotationScheduler => "rotation-scheduler",
            Service::Revocation => "revocation",
            Service::Policy => "policy",
        }
    }

    /// Subject group of this service's endpoints: `sigil.<service>.v1`.
    pub fn group(self) -> String {
        format!("{SERVICE_PREFIX}.{}.{SERVICE_VERSION}", self.name())
    }

    /// Parse a service name as used on the command line.
    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A request/reply operation: the service that serves it and its endpoint name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operation {
    pub service: Service,
    pub name: &'static str,
}

impl Operation {
    /// Full subject: `sigil.<service>.v1.<operation>`.
    pub fn subject(self) -> String {
        format!("{}.{}", self.service.group(), self.name)
    }
}

pub const POLICY_EVALUATE: Operation = Operation {
    service: Service::Policy,
    name: "evaluate",
};
pub const POLICY_APPLY: Operation = Operation {
    service: Service::Policy,
    name: "apply",
};
pub const POLICY_LIST: Operation = Operation {
    service: Service::Policy,
    name: "list",
};
pub const POLICY_SHOW: Operation = Operation {
    service: Service::Policy,
    name: "show",
};
pub const POLICY_ROLLBACK: Operation = Operation {
    service: Service::Policy,
    name: "rollback",
};
pub const POLICY_TEST: Operation = Operation {
    service: Service::Policy,
    name: "test",
};
pub const POLICY_AUDIT_LIST: Operation = Operation {
    service: Service::Policy,
    name: "audit_list",
};
pub const POLICY_AUDIT_VERIFY: Operation = Operation {
    service: Service::Policy,
    name: "audit_verify",
};
pub const POLICY_TOKEN_CREATE: Operation = Operation {
    service: Service::Policy,
    name: "token_create",
};
pub const ISSUER_ISSUE: Operation = Operation {
    service: Service::Issuer,
    name: "issue",
};
pub const ISSUER_CA_LIST: Operation = Operation {
    service: Service::Issuer,
    name: "ca_list",
};
pub const ISSUER_CA_INIT: Operation = Operation {
    service: Service::Issuer,
    name: "ca_init",
};
pub const ISSUER_CA_ROTATE: Operation = Operation {
    service: Service::Issuer,
    name: "ca_rotate",
};
pub const ISSUER_TRUST_BUNDLE: Operation = Operation {
    service: Service::Issuer,
    name: "trust_bundle",
};
pub const INVENTORY_QUERY: Operation = Operation {
    service: Service::Inventory,
    name: "query",
};
pub const INVENTORY_GET: Operation = Operation {
    service: Service::Inventory,
    name: "get",
};
pub const REVOCATION_REVOKE: Operation = Operation {
    service: Service::Revocation,
    name: "revoke",
};
pub const REVOCATION_STATUS: Operation = Operation {
    service: Service::Revocation,
    name: "status",
};

/// Every request/reply operation, for discovery docs and the AsyncAPI export.
pub const OPERATIONS: [Operation; 18] = [
    POLICY_EVALUATE,
    POLICY_APPLY,
    POLICY_LIST,
    POLICY_SHOW,
    POLICY_ROLLBACK,
    POLICY_TEST,
    POLICY_AUDIT_LIST,
    POLICY_AUDIT_VERIFY,
    POLICY_TOKEN_CREATE,
    ISSUER_ISSUE,
    ISSUER_CA_LIST,
    ISSUER_CA_INIT,
    ISSUER_CA_ROTATE,
    ISSUER_TRUST_BUNDLE,
    INVENTORY_QUERY,
    INVENTORY_GET,
    REVOCATION_REVOKE,
    REVOCATION_STATUS,
];

/// Subject an event of this kind is published on: `sigil.events.v1.<kind>`.
pub fn event_subject(kind: EventKind) -> String {
    format!("{EVENTS_PREFIX}.{}", kind.subject_suffix())
}

/// Dead-letter subject for a consumer: `sigil.deadletter.v1.<consumer>`.
pub fn dead_letter_subject(consumer: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}.{consumer}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_naming_rule() {
        assert_eq!(ISSUER_ISSUE.subject(), "sigil.issuer.v1.issue");
        assert_eq!(
            Service::RotationScheduler.group(),
            "sigil.rotation-scheduler.v1"
        );
        assert_eq!(
            event_subject(EventKind::IdentityIssued),
            "sigil.events.v1.identity.issued"
        );
        for s in Service::ALL {
            assert_eq!(Service::from_name(s.name()), Some(s));
        }
    }
}
