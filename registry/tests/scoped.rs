//! Scoped registry lookups against the REAL mmengine 0.10.7 behaviour, recorded by
//! `registry/tests/data/registry_semantics.py` into `registry_semantics.json`.

use mmcompat_registry::scoped::{BuildScope, Registries, RegistryError, TypeRegistration};
use serde_json::Value;

fn semantics() -> Value {
    let text = include_str!("data/registry_semantics.json");
    serde_json::from_str(text).expect("registry_semantics.json parses")
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

static PAYLOAD: () = ();

fn reg(kind: &str, scope: &str, name: &str) -> TypeRegistration {
    TypeRegistration {
        scope: leak(scope),
        kind: leak(kind),
        name: leak(name),
        payload: &PAYLOAD,
        location: "test",
    }
}

/// The toy tree the Python script registered, in our registries.
fn toy_registries(sem: &Value) -> Registries {
    let mut regs = Registries::new();
    for r in sem["registered"].as_array().expect("registered") {
        let s = |k: &str| r[k].as_str().expect("string");
        regs.add(reg(s("kind"), s("scope"), s("name")))
            .expect("no duplicates");
    }
    regs
}

#[test]
fn lookups_match_real_mmengine() {
    let sem = semantics();
    let regs = toy_registries(&sem);
    let cases = sem["lookup_cases"].as_array().expect("lookup_cases");
    assert!(cases.len() > 200, "the recorded cases are all there");
    let mut mismatches = Vec::new();
    for case in cases {
        let kind = case["kind"].as_str().expect("kind");
        let current = case["current"].as_str().expect("current");
        let key = case["key"].as_str().expect("key");
        let expected = case["found_in"].as_str();
        let got = regs
            .lookup(kind, key, &BuildScope::new(Some(current), None))
            .ok()
            .map(|r| r.scope);
        if got != expected {
            mismatches.push(format!(
                "{kind} {key:?} in {current}: mmengine {expected:?}, ours {got:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Resolve every `type` in a nested cfg like `build_from_cfg` (+ nested builds in constructors).
fn resolve_tree(
    regs: &Registries,
    cfg: &Value,
    path: &str,
    scope: &BuildScope,
    out: &mut Vec<(String, String, String)>,
) {
    let ty = cfg["type"].as_str().expect("type");
    let (found, scope) = regs
        .resolve("model", ty, cfg["_scope_"].as_str(), scope)
        .expect("resolves");
    out.push((
        path.to_owned(),
        found.name.to_owned(),
        found.scope.to_owned(),
    ));
    for (k, v) in cfg.as_object().expect("dict") {
        if v.get("type").is_some() {
            resolve_tree(regs, v, &format!("{path}.{k}"), &scope, out);
        }
    }
}

#[test]
fn nested_builds_and_scope_key_match_real_mmengine() {
    let sem = semantics();
    let regs = toy_registries(&sem);
    for case in sem["build_cases"].as_array().expect("build_cases") {
        // DefaultScope.get_instance(...) in the script = the scope the build starts with.
        let start = BuildScope::new(None, case["default_scope"].as_str());
        let mut ours = Vec::new();
        resolve_tree(&regs, &case["cfg"], "model", &start, &mut ours);
        let expected: Vec<(String, String, String)> = case["resolved"]
            .as_array()
            .expect("resolved")
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().expect("string").to_owned();
                (s("path"), s("type"), s("found_in"))
            })
            .collect();
        assert_eq!(ours, expected, "case {}", case["cfg"]);
    }
}

#[test]
fn explicit_scope_beats_default_scope_and_scope_key_beats_both() {
    let explicit = BuildScope::new(Some("mmyolo"), Some("mmdet"));
    assert_eq!(explicit.name(), "mmyolo");
    assert_eq!(BuildScope::new(None, Some("mmdet")).name(), "mmdet");
    assert_eq!(BuildScope::new(None, None).name(), "mmengine");
    assert_eq!(explicit.enter(Some("mmrazor")).name(), "mmrazor");
    assert_eq!(explicit.enter(None).name(), "mmyolo");
}

#[test]
fn not_found_names_the_scopes_searched_and_where_the_name_is() {
    let sem = semantics();
    let regs = toy_registries(&sem);
    let err = regs
        .lookup("model", "CSPNeXt", &BuildScope::new(Some("mmrazor"), None))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("searched mmrazor → mmengine"), "{msg}");
    assert!(msg.contains("`CSPNeXt` is registered in mmdet and mmyolo; write `mmdet.CSPNeXt` or `mmyolo.CSPNeXt`"), "{msg}");
    let RegistryError::NotFound(nf) = err else {
        panic!("not a NotFound: {msg}")
    };
    assert_eq!(nf.searched, ["mmrazor", "mmengine"]);
    assert_eq!(nf.registered_in, ["mmdet", "mmyolo"]);

    let msg = regs
        .lookup(
            "model",
            "YOLODetectr",
            &BuildScope::new(Some("mmyolo"), None),
        )
        .unwrap_err()
        .to_string();
    assert!(msg.contains("did you mean `YOLODetector`"), "{msg}");

    // A transform looked up as a model.
    let msg = regs
        .lookup(
            "model",
            "PackDetInputs",
            &BuildScope::new(Some("mmdet"), None),
        )
        .unwrap_err()
        .to_string();
    assert!(msg.contains("registered as a transform type"), "{msg}");
}

#[test]
fn duplicates_name_both_locations() {
    let mut regs = Registries::new();
    regs.add(reg("model", "mmdet", "RTMDet")).unwrap();
    let mut second = reg("model", "mmdet", "RTMDet");
    second.location = "other::place";
    let msg = regs.add(second).unwrap_err().to_string();
    assert!(msg.contains("at test and at other::place"), "{msg}");
    // Same name in a sibling scope is fine (mmdet and mmyolo both register CSPNeXt).
    regs.add(reg("model", "mmyolo", "RTMDet")).unwrap();
}

#[test]
fn unknown_scope_and_kind_are_errors_with_suggestions() {
    let regs = Registries::new();
    let msg = regs
        .lookup("modle", "X", &BuildScope::root())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("did you mean `model`"), "{msg}");
    let msg = regs
        .lookup("model", "X", &BuildScope::new(Some("mmyol"), None))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("unknown scope `mmyol`") && msg.contains("`mmyolo`"),
        "{msg}"
    );
    // mmengine's own name for a kind is accepted too.
    assert!(matches!(
        regs.lookup("task util", "X", &BuildScope::root()),
        Err(RegistryError::NotFound(_))
    ));
}

mmcompat_registry::register_type!(scope: "mmyolo", kind: "task_util", name: "CoreTestAssigner", payload: &7u32);

#[test]
fn inventory_registrations_are_collected_with_their_payload() {
    let regs = Registries::from_inventory().expect("no duplicate registrations");
    let found = regs
        .lookup(
            "task_util",
            "CoreTestAssigner",
            &BuildScope::new(None, Some("mmyolo")),
        )
        .unwrap();
    assert_eq!(found.payload::<u32>(), Some(&7));
    assert_eq!(found.payload::<u64>(), None);
    assert!(found.location.ends_with("scoped"), "{}", found.location);
}

#[test]
fn upstream_catalogue_explains_types_mmcompat_does_not_implement() {
    let regs = Registries::new();
    let msg = regs
        .lookup(
            "model",
            "YOLOv8PAFPN",
            &BuildScope::new(None, Some("mmyolo")),
        )
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`YOLOv8PAFPN` is an mmyolo model type that mmcompat does not implement"),
        "{msg}"
    );
    // The catalogue is the real packages' names (tests/fixtures/registries.json).
    let cat = mmcompat_registry::scoped::upstream_catalogue();
    assert_eq!(cat.scopes_of("model", "CSPNeXt"), ["mmdet", "mmyolo"]);
    assert_eq!(
        cat.scopes_of("transform", "LoadImageFromFile"),
        ["mmengine"]
    );
}

#[test]
fn registry_listing_text_and_json() {
    let sem = semantics();
    let regs = toy_registries(&sem);
    let adapters = vec![mmcompat_registry::scoped::AdapterListing {
        scope: "mmrazor".into(),
        name: "mmrazor.kd_student".into(),
        source: "static (mmcompat_plugin_mmrazor)".into(),
        description: "student".into(),
        options: Vec::new(),
    }];
    let text = mmcompat_registry::scoped::render_registry(&regs, &adapters, None, None);
    // Named without the module path: this file is compiled into core.rs and, while cargo
    // auto-discovers tests, on its own too; both must find the same snapshot.
    insta::with_settings!({ prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("registry_listing", text);
    });
    let only = mmcompat_registry::scoped::render_registry(
        &regs,
        &adapters,
        Some("mmyolo"),
        Some("transform"),
    );
    assert!(
        only.starts_with("scope mmyolo (parent mmengine)\n  transform (2 of 21 upstream):"),
        "{only}"
    );
    let json =
        mmcompat_registry::scoped::render_registry_json(&regs, &adapters, Some("mmrazor"), None);
    assert_eq!(json["scopes"][0]["scope"], "mmrazor");
    assert_eq!(
        json["scopes"][0]["adapters"][0]["name"],
        "mmrazor.kd_student"
    );
}

fn core_test_builder(x: u32) -> u32 {
    x + 1
}

// How the backend registers a builder: a function pointer as the payload.
mmcompat_registry::register_type!(
    scope: "mmdet", kind: "model", name: "CoreTestBuilder", payload: &(core_test_builder as fn(u32) -> u32)
);

#[test]
fn function_pointer_payloads_downcast() {
    let regs = Registries::from_inventory().unwrap();
    let found = regs
        .lookup("model", "mmdet.CoreTestBuilder", &BuildScope::root())
        .unwrap();
    let build = found.payload::<fn(u32) -> u32>().expect("a builder");
    assert_eq!(build(41), 42);
}
