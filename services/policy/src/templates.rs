//! Built-in policy templates (`sigil policy templates`): Cedar files under
//! `services/policy/templates/` that users apply as they are or adapt. Each one
//! validates against the schema on its own (a unit test checks).

/// A named template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    pub name: &'static str,
    pub summary: &'static str,
    pub text: &'static str,
}

/// The built-in default policy set: version 1 of a new installation.
pub const DEFAULT: &str = include_str!("../templates/default.cedar");

/// Every template, `default` first.
pub const ALL: [Template; 10] = [
    Template {
        name: "default",
        summary: "the built-in default set: local/private names and addresses, any SPIFFE ID, 90 days clamped, no wildcards",
        text: DEFAULT,
    },
    Template {
        name: "dns-suffix",
        summary: "DNS-suffix allowance for a principal group",
        text: include_str!("../templates/dns-suffix.cedar"),
    },
    Template {
        name: "ip-range",
        summary: "IP-range allowance for a principal group",
        text: include_str!("../templates/ip-range.cedar"),
    },
    Template {
        name: "spiffe-path",
        summary: "SPIFFE trust domain and path allowance for a principal group",
        text: include_str!("../templates/spiffe-path.cedar"),
    },
    Template {
        name: "wildcard",
        summary: "wildcard names only for members of a group",
        text: include_str!("../templates/wildcard.cedar"),
    },
    Template {
        name: "max-lifetime",
        summary: "maximum lifetime per profile (clamped or denied)",
        text: include_str!("../templates/max-lifetime.cedar"),
    },
    Template {
        name: "key-strength",
        summary: "minimum key strength and allowed algorithms",
        text: include_str!("../templates/key-strength.cedar"),
    },
    Template {
        name: "pq-required",
        summary: "hybrid or post-quantum required for a profile",
        text: include_str!("../templates/pq-required.cedar"),
    },
    Template {
        name: "sc081",
        summary: "CA/B Forum SC-081 TLS server lifetimes: 200 d from 2026-03-15, 100 d from 2027-03-15, 47 d from 2029-03-15",
        text: include_str!("../templates/sc081.cedar"),
    },
    Template {
        name: "algorithm-sunset",
        summary: "RSA-2048 refused after a date; hybrid or PQ required after another",
        text: include_str!("../templates/algorithm-sunset.cedar"),
    },
];

/// The template called `name`.
pub fn find(name: &str) -> Option<&'static Template> {
    ALL.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::engine::Compiled;

    #[test]
    fn every_template_validates_against_the_schema() {
        for t in ALL {
            Compiled::new("t", t.text, None).unwrap_or_else(|e| panic!("template {}: {e}", t.name));
        }
        let all: String = ALL[1..]
            .iter()
            .map(|t| t.text)
            .collect::<Vec<_>>()
            .join("\n");
        // Templates combine (no @id clashes except the shared no-wildcards rule).
        let combined = format!(
            "{DEFAULT}\n{}",
            all.replace("@id(\"no-wildcards\")", "@id(\"no-wildcards-2\")")
        );
        Compiled::new("t", &combined, None).unwrap();
        assert!(find("sc081").is_some());
        assert!(find("nope").is_none());
    }
}
