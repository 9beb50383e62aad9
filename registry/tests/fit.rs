//! The one weights path ([`fit_checkpoint`]): chain choice against a model's expected keys, the
//! strict key check and its grouped report, `num_batches_tracked`, forced and greedy chains.

use mmcompat_registry::adapter::fit::{expected_state_dict, greedy_chain, is_bn_counter};
use mmcompat_registry::adapter::{
    fit_checkpoint, AdapterOptions, AdapterSet, ChainChoice, CheckpointView, ExpectedKeys,
    FitError, FitRequest, TensorEntry,
};
use mmcompat_registry::DType;

fn view(keys: &[(&str, &[usize])]) -> CheckpointView {
    let entries = keys
        .iter()
        .map(|(k, s)| TensorEntry {
            key: (*k).to_owned(),
            dtype: DType::F32,
            shape: s.to_vec(),
        })
        .collect();
    CheckpointView {
        top_level_keys: vec!["meta".into(), "state_dict".into()],
        sections: [("state_dict".to_owned(), entries)].into_iter().collect(),
        meta: serde_json::json!({}),
    }
}

/// A conv + batch norm model, as a backend lists its parameters and buffers.
fn model() -> ExpectedKeys {
    expected_state_dict([
        ("backbone.conv.weight".to_owned(), vec![8, 3, 3, 3]),
        ("backbone.bn.weight".to_owned(), vec![8]),
        ("backbone.bn.bias".to_owned(), vec![8]),
        ("backbone.bn.running_mean".to_owned(), vec![8]),
        ("backbone.bn.running_var".to_owned(), vec![8]),
    ])
}

const PLAIN: &[(&str, &[usize])] = &[
    ("backbone.conv.weight", &[8, 3, 3, 3]),
    ("backbone.bn.weight", &[8]),
    ("backbone.bn.bias", &[8]),
    ("backbone.bn.running_mean", &[8]),
    ("backbone.bn.running_var", &[8]),
    ("backbone.bn.num_batches_tracked", &[]),
];

fn compiled() -> CheckpointView {
    let keys: Vec<(String, &[usize])> = PLAIN
        .iter()
        .map(|(k, s)| (format!("_orig_mod.{k}"), *s))
        .collect();
    let refs: Vec<(&str, &[usize])> = keys.iter().map(|(k, s)| (k.as_str(), *s)).collect();
    view(&refs)
}

fn user_set() -> AdapterSet {
    let mut set = AdapterSet::empty();
    set.load_toml(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/adapters/strip_orig_mod.toml"
    ))
    .unwrap();
    set
}

fn request<'a>(
    expected: Option<&'a ExpectedKeys>,
    chain: &'a ChainChoice,
    options: &'a AdapterOptions,
    strict: bool,
) -> FitRequest<'a> {
    FitRequest {
        expected,
        chain,
        options,
        strict,
        config: None,
    }
}

#[test]
fn batch_norm_counters_are_expected_once_and_never_required() {
    let expected = model();
    assert_eq!(expected.len(), 6);
    assert_eq!(
        expected["backbone.bn.num_batches_tracked"],
        Vec::<usize>::new()
    );
    assert!(is_bn_counter("backbone.bn.num_batches_tracked"));
    let (opts, auto) = (AdapterOptions::default(), ChainChoice::Automatic);
    // Present in the checkpoint: not unexpected.
    let fit = fit_checkpoint(
        &view(PLAIN),
        &AdapterSet::empty(),
        request(Some(&expected), &auto, &opts, true),
    )
    .unwrap();
    assert!(fit.fits());
    assert!(fit.chain.adapters.is_empty());
    assert_eq!(fit.required, 5);
    // Absent: not missing.
    let fit = fit_checkpoint(
        &view(&PLAIN[..5]),
        &AdapterSet::empty(),
        request(Some(&expected), &auto, &opts, true),
    )
    .unwrap();
    assert!(fit.fits());
    assert_eq!(fit.coverage(), 100.0);
}

#[test]
fn strict_mismatch_is_grouped_and_names_the_prefix() {
    let expected = model();
    let (opts, auto) = (AdapterOptions::default(), ChainChoice::Automatic);
    let err = fit_checkpoint(
        &compiled(),
        &AdapterSet::empty(),
        request(Some(&expected), &auto, &opts, true),
    )
    .unwrap_err();
    let FitError::NoFit(nofit) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(nofit.identity.missing.len(), 5);
    assert_eq!(nofit.identity.unexpected.len(), 6);
    let text = err.to_string();
    assert!(text.contains("5 missing keys"), "{text}");
    assert!(text.contains("_orig_mod.backbone.*"), "{text}");

    // With the user adapter the automatic choice fits.
    let fit = fit_checkpoint(
        &compiled(),
        &user_set(),
        request(Some(&expected), &auto, &opts, true),
    )
    .unwrap();
    assert!(fit.automatic);
    assert_eq!(fit.chain.adapters, ["torch.strip_orig_mod"]);
    assert!(fit.mismatch.as_ref().unwrap().fits());
}

#[test]
fn non_strict_keeps_the_closest_chain_with_its_mismatch() {
    let expected = model();
    let (opts, auto) = (AdapterOptions::default(), ChainChoice::Automatic);
    let mut ck = PLAIN.to_vec();
    ck.retain(|(k, _)| *k != "backbone.conv.weight");
    let fit = fit_checkpoint(
        &view(&ck),
        &AdapterSet::empty(),
        request(Some(&expected), &auto, &opts, false),
    )
    .unwrap();
    assert!(!fit.fits());
    assert_eq!(
        fit.mismatch.as_ref().unwrap().missing,
        ["backbone.conv.weight"]
    );
    assert_eq!(fit.coverage(), 80.0);
}

#[test]
fn forced_chain_is_applied_and_checked() {
    let expected = model();
    let opts = AdapterOptions::default();
    let forced = ChainChoice::Forced(vec!["torch.strip_orig_mod".into()]);
    let fit = fit_checkpoint(
        &compiled(),
        &user_set(),
        request(Some(&expected), &forced, &opts, true),
    )
    .unwrap();
    assert!(!fit.automatic);
    assert_eq!(fit.chain.adapters, ["torch.strip_orig_mod"]);

    // A forced chain that does not fit: the strict error names the adapter that would.
    let identity = ChainChoice::from_names(&[]);
    assert_eq!(identity, ChainChoice::Automatic);
    let set = user_set();
    let wrong = ChainChoice::Forced(vec![]);
    let err = fit_checkpoint(
        &compiled(),
        &set,
        request(Some(&expected), &wrong, &opts, true),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("this would fit: --adapter torch.strip_orig_mod"),
        "{err}"
    );
    // Unknown names are the adapter set's error.
    let unknown = ChainChoice::Forced(vec!["torch.strip_orig".into()]);
    let err = fit_checkpoint(
        &compiled(),
        &set,
        request(Some(&expected), &unknown, &opts, true),
    )
    .unwrap_err();
    assert!(matches!(err, FitError::Adapter(_)), "{err:?}");
}

#[test]
fn without_expected_keys_the_greedy_chain_is_used() {
    let (opts, auto) = (AdapterOptions::default(), ChainChoice::Automatic);
    let fit = fit_checkpoint(&compiled(), &user_set(), request(None, &auto, &opts, true)).unwrap();
    assert!(fit.automatic && fit.fits() && fit.mismatch.is_none());
    assert_eq!(fit.chain.adapters, ["torch.strip_orig_mod"]);
    let chain = greedy_chain(&view(PLAIN), None, &user_set(), &opts).unwrap();
    assert!(chain.adapters.is_empty());
    assert_eq!(
        fit.chain.mapping.tensors[0].key, "backbone.conv.weight",
        "prefix stripped"
    );
}
