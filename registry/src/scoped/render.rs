//! `mmcompat registry [--scope S] [--kind K] [--json]`: what is registered where, deterministic
//! text and JSON (sorted by scope, kind, name).

use serde::Serialize;

use super::{canonical_kind, upstream_catalogue, Registries};

/// One adapter as the listing shows it (the adapter module fills these; kept as plain strings so
/// this module does not depend on the adapter contract).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AdapterListing {
    pub scope: String,
    pub name: String,
    /// `static (crate path)`, `dynamic (/path/lib.so)` or `toml (/path/file.toml)`.
    pub source: String,
    pub description: String,
    /// The `--adapter-option` keys it reads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The listing, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryListing {
    pub scopes: Vec<ScopeListing>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScopeListing {
    pub scope: String,
    pub parent: Option<String>,
    /// kind → registered names (sorted) with their registration location.
    pub kinds: Vec<KindListing>,
    pub adapters: Vec<AdapterListing>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindListing {
    pub kind: String,
    pub types: Vec<TypeListing>,
    /// How many names the real package registers in this scope and kind (0 if unknown).
    pub upstream_count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TypeListing {
    pub name: String,
    pub location: String,
}

fn listing(
    regs: &Registries,
    adapters: &[AdapterListing],
    scope: Option<&str>,
    kind: Option<&str>,
) -> RegistryListing {
    let kind = kind.map(|k| canonical_kind(k).unwrap_or(k));
    let mut scopes = Vec::new();
    let known = regs.scopes();
    for (s, parent) in known.iter().copied() {
        if scope.is_some_and(|want| want != s) {
            continue;
        }
        let mut kinds = Vec::new();
        for k in regs.kinds() {
            if kind.is_some_and(|want| want != k) {
                continue;
            }
            let types: Vec<TypeListing> = regs
                .entries(k, s)
                .map(|r| TypeListing {
                    name: r.name.to_owned(),
                    location: r.location.to_owned(),
                })
                .collect();
            if !types.is_empty() {
                kinds.push(KindListing {
                    kind: k.to_owned(),
                    types,
                    upstream_count: upstream_catalogue().count(k, s),
                });
            }
        }
        let mut ads: Vec<AdapterListing> =
            adapters.iter().filter(|a| a.scope == s).cloned().collect();
        ads.sort();
        scopes.push(ScopeListing {
            scope: s.to_owned(),
            parent: parent.map(str::to_owned),
            kinds,
            adapters: ads,
        });
    }
    // Adapters may name a scope no registry has (a TOML file's `scope = "custom"`): list them too.
    let mut others: Vec<&str> = adapters
        .iter()
        .map(|a| a.scope.as_str())
        .filter(|a| !known.iter().any(|(s, _)| s == a))
        .collect();
    others.sort_unstable();
    others.dedup();
    for s in others {
        if scope.is_some_and(|want| want != s) {
            continue;
        }
        let mut ads: Vec<AdapterListing> =
            adapters.iter().filter(|a| a.scope == s).cloned().collect();
        ads.sort();
        scopes.push(ScopeListing {
            scope: s.to_owned(),
            parent: None,
            kinds: Vec::new(),
            adapters: ads,
        });
    }
    RegistryListing { scopes }
}

/// Human listing: scopes with parents, registered types per kind, adapters with their source.
pub fn render_registry(
    regs: &Registries,
    adapters: &[AdapterListing],
    scope: Option<&str>,
    kind: Option<&str>,
) -> String {
    let list = listing(regs, adapters, scope, kind);
    let mut out = String::new();
    if list.scopes.is_empty() {
        let known: Vec<&str> = regs.scopes().into_iter().map(|(s, _)| s).collect();
        out.push_str(&format!(
            "no scope `{}`; known scopes: {}\n",
            scope.unwrap_or_default(),
            known.join(", ")
        ));
        return out;
    }
    for s in &list.scopes {
        match &s.parent {
            Some(p) => out.push_str(&format!("scope {} (parent {})\n", s.scope, p)),
            None => out.push_str(&format!("scope {} (root)\n", s.scope)),
        }
        if s.kinds.is_empty() {
            out.push_str("  (no types registered)\n");
        }
        for k in &s.kinds {
            let upstream = if k.upstream_count > 0 {
                format!(" of {} upstream", k.upstream_count)
            } else {
                String::new()
            };
            out.push_str(&format!("  {} ({}{}):\n", k.kind, k.types.len(), upstream));
            for t in &k.types {
                out.push_str(&format!("    {:<32} {}\n", t.name, t.location));
            }
        }
        if kind.is_none() && !s.adapters.is_empty() {
            out.push_str(&format!("  adapters ({}):\n", s.adapters.len()));
            for a in &s.adapters {
                out.push_str(&format!("    {:<32} {}\n", a.name, a.source));
                if !a.options.is_empty() {
                    out.push_str(&format!(
                        "    {:<32} options: {}\n",
                        "",
                        a.options.join(", ")
                    ));
                }
            }
        }
    }
    out
}

/// The same listing as JSON (`--json`).
pub fn render_registry_json(
    regs: &Registries,
    adapters: &[AdapterListing],
    scope: Option<&str>,
    kind: Option<&str>,
) -> serde_json::Value {
    serde_json::to_value(listing(regs, adapters, scope, kind)).unwrap_or(serde_json::Value::Null)
}
