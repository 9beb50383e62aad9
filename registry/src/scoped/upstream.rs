//! Catalogue of the type names the REAL OpenMMLab packages register (per kind and scope), so that a
//! lookup error can say "`YOLOv8PAFPN` is an mmyolo model type that mmcompat does not implement"
//! instead of a bare "not found".
//!
//! `upstream_names.json` is a compact copy of `tests/fixtures/registries.json` (written by the
//! fixture generator from the installed mmengine/mmdet/mmyolo/mmrazor), regenerated with
//! `python3 registry/src/scoped/make_upstream_names.py`. It is data only; nothing here is ever
//! used to *build* anything.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// kind → scope → sorted names.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpstreamCatalogue {
    /// Where the names came from (package versions).
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub kinds: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl UpstreamCatalogue {
    /// Scopes where the real packages register `name` in `kind` (our kind identifier).
    pub fn scopes_of(&self, kind: &str, name: &str) -> Vec<String> {
        self.kinds
            .get(kind)
            .into_iter()
            .flat_map(|scopes| scopes.iter())
            .filter(|(_, names)| names.binary_search_by(|n| n.as_str().cmp(name)).is_ok())
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Number of names for `kind` in `scope`.
    pub fn count(&self, kind: &str, scope: &str) -> usize {
        self.kinds
            .get(kind)
            .and_then(|s| s.get(scope))
            .map_or(0, Vec::len)
    }
}

/// The embedded catalogue (parsed once). A malformed embedded file is a build-time bug caught by
/// the unit test below; at run time it degrades to an empty catalogue rather than panicking.
pub fn upstream_catalogue() -> &'static UpstreamCatalogue {
    static CATALOGUE: OnceLock<UpstreamCatalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let mut cat: UpstreamCatalogue = serde_json::from_str(include_str!("upstream_names.json"))
            .unwrap_or_else(|e| {
                tracing::error!("embedded upstream_names.json is malformed: {e}");
                UpstreamCatalogue::default()
            });
        for scopes in cat.kinds.values_mut() {
            for names in scopes.values_mut() {
                names.sort();
                names.dedup();
            }
        }
        cat
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_catalogue_parses() {
        let parsed: Result<super::UpstreamCatalogue, _> =
            serde_json::from_str(include_str!("upstream_names.json"));
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
