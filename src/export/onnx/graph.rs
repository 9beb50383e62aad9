//! A small ONNX graph builder the model components emit into (`emit_onnx` next to each
//! `forward`): values are [`ValueId`]s, named only when the model is finished, so that outputs can
//! be renamed after the fact. Weights become initializers under their state-dict names; with
//! `half` every weight is stored as float16 (the caller casts the input and outputs).
//!
//! Never: run a model or read files; everything here is deterministic (the same model gives the
//! same bytes, which the committed onnxruntime verdict relies on).

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use super::proto::{
    attribute_type, data_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto,
};
use super::ExportError;

/// One value (tensor) of the graph being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueId(usize);

/// A dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    /// A symbolic dimension (`dim_param`), e.g. `"batch"`.
    Symbolic(String),
}

#[derive(Debug)]
struct Node {
    op: &'static str,
    /// `None`: an omitted optional input (`""`).
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<ValueId>,
    attrs: Vec<AttributeProto>,
}

#[derive(Debug)]
struct Io {
    value: ValueId,
    elem_type: i32,
    dims: Vec<Dim>,
    doc: String,
}

/// The graph under construction.
#[derive(Debug)]
pub struct OnnxGraph {
    names: Vec<String>,
    nodes: Vec<Node>,
    initializers: Vec<TensorProto>,
    used_names: HashMap<String, usize>,
    inputs: Vec<Io>,
    outputs: Vec<Io>,
    half: bool,
    fold_bn: bool,
    opset: i64,
    /// `(H, W)` of each head level at the export size (`OnnxGraph::set_level_sizes`).
    level_sizes: Vec<(i64, i64)>,
    op_counts: HashMap<&'static str, usize>,
    scalars: HashMap<u32, ValueId>,
}

/// `AttributeProto` of one int.
pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: Some(v),
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

/// `AttributeProto` of one float.
pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: Some(v),
        r#type: attribute_type::FLOAT,
        ..Default::default()
    }
}

/// `AttributeProto` of ints.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

/// `AttributeProto` of a string.
pub fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: Some(v.as_bytes().to_vec()),
        r#type: attribute_type::STRING,
        ..Default::default()
    }
}

fn tch_err(what: &str) -> impl FnOnce(tch::TchError) -> ExportError + '_ {
    move |source| ExportError::Tensor {
        what: what.to_string(),
        source,
    }
}

/// A float tensor's values as host f32 (any kind, any device).
pub fn tensor_f32(t: &Tensor, what: &str) -> Result<(Vec<i64>, Vec<f32>), ExportError> {
    let t = t
        .f_to_kind(Kind::Float)
        .and_then(|t| t.f_to_device(Device::Cpu))
        .and_then(|t| t.f_contiguous())
        .map_err(tch_err(what))?;
    let n = t.numel();
    let mut v = vec![0f32; n];
    t.f_copy_data(&mut v, n).map_err(tch_err(what))?;
    Ok((t.size(), v))
}

impl OnnxGraph {
    pub fn new(half: bool, opset: i64) -> Self {
        OnnxGraph {
            names: Vec::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            used_names: HashMap::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            half,
            fold_bn: true,
            opset,
            level_sizes: Vec::new(),
            op_counts: HashMap::new(),
            scalars: HashMap::new(),
        }
    }

    /// Whether weights are stored as float16.
    pub fn half(&self) -> bool {
        self.half
    }

    /// Whether batch norms are folded into their convolutions (`OnnxOptions::fold_bn`).
    pub fn fold_bn(&self) -> bool {
        self.fold_bn
    }

    pub fn set_fold_bn(&mut self, fold: bool) {
        self.fold_bn = fold;
    }

    /// Records the `(H, W)` of each head level at the export size (write.rs, from its probe
    /// forward): emitters whose constants depend on a level's geometry read it (RepPoints'
    /// deformable convolution: tract cannot type its sampling grid built from `Shape`).
    pub fn set_level_sizes(&mut self, sizes: Vec<(i64, i64)>) {
        self.level_sizes = sizes;
    }

    /// `(H, W)` of head level `level`, if recorded.
    pub fn level_size(&self, level: usize) -> Option<(i64, i64)> {
        self.level_sizes.get(level).copied()
    }

    /// The opset the nodes are written for (some ops moved attributes to inputs over time).
    pub fn opset(&self) -> i64 {
        self.opset
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn new_value(&mut self, name: String) -> ValueId {
        self.names.push(name);
        ValueId(self.names.len() - 1)
    }

    /// A unique name derived from `wanted` (shared convolutions fold into one tensor per level).
    fn unique(&mut self, wanted: &str) -> String {
        let n = self.used_names.entry(wanted.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            wanted.to_string()
        } else {
            format!("{wanted}#{}", *n - 1)
        }
    }

    /// A graph input.
    pub fn input(&mut self, name: &str, elem_type: i32, dims: Vec<Dim>, doc: &str) -> ValueId {
        let v = self.new_value(name.to_string());
        self.inputs.push(Io {
            value: v,
            elem_type,
            dims,
            doc: doc.to_string(),
        });
        v
    }

    /// A graph input that callers may omit: an initializer of the same name holds its default
    /// (`default_dims`, raw little-endian `default`), which a runtime uses when the input is not
    /// fed (onnxruntime's overridable initializers; tract makes it a constant).
    pub fn input_with_default(
        &mut self,
        name: &str,
        elem_type: i32,
        dims: Vec<Dim>,
        doc: &str,
        (default_dims, default): (Vec<i64>, Vec<u8>),
    ) -> ValueId {
        let v = self.input(name, elem_type, dims, doc);
        self.used_names.insert(name.to_string(), 1);
        self.initializers.push(TensorProto {
            dims: default_dims,
            data_type: elem_type,
            name: name.to_string(),
            raw_data: default,
        });
        v
    }

    /// Declares `value` a graph output named `name`.
    pub fn output(
        &mut self,
        value: ValueId,
        name: &str,
        elem_type: i32,
        dims: Vec<Dim>,
        doc: &str,
    ) {
        self.names[value.0] = name.to_string();
        self.outputs.push(Io {
            value,
            elem_type,
            dims,
            doc: doc.to_string(),
        });
    }

    fn initializer(&mut self, name: &str, dims: Vec<i64>, dt: i32, raw: Vec<u8>) -> ValueId {
        let name = self.unique(name);
        self.initializers.push(TensorProto {
            dims,
            data_type: dt,
            name: name.clone(),
            raw_data: raw,
        });
        self.new_value(name)
    }

    /// A network weight (float16 when the graph is `half`), named `name`.
    pub fn weight(&mut self, name: &str, dims: Vec<i64>, values: &[f32]) -> ValueId {
        if self.half {
            let raw = values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect();
            self.initializer(name, dims, data_type::FLOAT16, raw)
        } else {
            self.const_f32(name, dims, values)
        }
    }

    /// A network weight from a tensor (see [`OnnxGraph::weight`]).
    pub fn weight_tensor(&mut self, name: &str, t: &Tensor) -> Result<ValueId, ExportError> {
        let (dims, v) = tensor_f32(t, name)?;
        Ok(self.weight(name, dims, &v))
    }

    /// A float32 constant whatever `half` says (decoding and NMS always run in float32).
    pub fn const_f32(&mut self, name: &str, dims: Vec<i64>, values: &[f32]) -> ValueId {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, data_type::FLOAT, raw)
    }

    /// An int64 constant.
    pub fn const_i64(&mut self, name: &str, dims: Vec<i64>, values: &[i64]) -> ValueId {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, data_type::INT64, raw)
    }

    /// A scalar in the compute precision of activations (float16 when `half`), one initializer
    /// per distinct value.
    pub fn scalar(&mut self, v: f32) -> ValueId {
        if let Some(&id) = self.scalars.get(&v.to_bits()) {
            return id;
        }
        let id = self.weight(&format!("scalar_{v}"), vec![], &[v]);
        self.scalars.insert(v.to_bits(), id);
        id
    }

    /// `x` converted to the ONNX element type `to` (`proto::data_type`).
    pub fn cast(&mut self, x: ValueId, to: i32) -> ValueId {
        self.op("Cast", &[x], vec![attr_i("to", i64::from(to))])
    }

    /// A node with one output.
    pub fn op(
        &mut self,
        op: &'static str,
        inputs: &[ValueId],
        attrs: Vec<AttributeProto>,
    ) -> ValueId {
        let ins: Vec<Option<ValueId>> = inputs.iter().copied().map(Some).collect();
        self.op_multi(op, ins, 1, attrs)[0]
    }

    /// A node with `n_out` outputs and possibly omitted optional inputs.
    pub fn op_multi(
        &mut self,
        op: &'static str,
        inputs: Vec<Option<ValueId>>,
        n_out: usize,
        attrs: Vec<AttributeProto>,
    ) -> Vec<ValueId> {
        let k = self.op_counts.entry(op).or_insert(0);
        *k += 1;
        let base = format!("{op}_{}", *k - 1);
        let outputs = (0..n_out)
            .map(|i| self.new_value(format!("{base}:{i}")))
            .collect::<Vec<_>>();
        self.nodes.push(Node {
            op,
            inputs,
            outputs: outputs.clone(),
            attrs,
        });
        outputs
    }

    /// The finished model: IR version `ir_version`, the default domain at `opset`.
    pub fn finish(self, ir_version: i64, doc: &str, meta: Vec<(String, String)>) -> ModelProto {
        let name = |v: &ValueId| self.names[v.0].clone();
        let io = |io: &Io| ValueInfoProto {
            name: name(&io.value),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: io.elem_type,
                    shape: Some(TensorShapeProto {
                        dim: io
                            .dims
                            .iter()
                            .map(|d| Dimension {
                                value: Some(match d {
                                    Dim::Fixed(n) => DimensionValue::DimValue(*n),
                                    Dim::Symbolic(s) => DimensionValue::DimParam(s.clone()),
                                }),
                            })
                            .collect(),
                    }),
                }),
            }),
            doc_string: io.doc.clone(),
        };
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let node = self
            .nodes
            .iter()
            .map(|n| {
                let k = counts.entry(n.op).or_insert(0);
                *k += 1;
                NodeProto {
                    input: n
                        .inputs
                        .iter()
                        .map(|v| v.as_ref().map(name).unwrap_or_default())
                        .collect(),
                    output: n.outputs.iter().map(name).collect(),
                    name: format!("{}_{}", n.op, *k - 1),
                    op_type: n.op.to_string(),
                    attribute: n.attrs.clone(),
                }
            })
            .collect();
        let graph = GraphProto {
            node,
            name: "mmcompat".into(),
            initializer: self.initializers.clone(),
            doc_string: doc.into(),
            input: self.inputs.iter().map(io).collect(),
            output: self.outputs.iter().map(io).collect(),
        };
        ModelProto {
            ir_version,
            producer_name: "mmcompat".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            metadata_props: meta
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key, value })
                .collect(),
        }
    }
}
