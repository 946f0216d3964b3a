//! A network: layers in order, with residual skips, over arrays the network owns.
//!
//! The config tree is flattened into nodes `k = 0..n`, node `k` mapping tensor `t_k` to
//! `t_{k+1}` (`t_0` is the input batch). A residual block `y = x + f(x)` becomes its inner
//! layers followed by an `Add { from }` node with `t_{k+1} = t_k + t_from`; in backward its
//! gradient is passed through and also added to `d_from` once the node that writes `d_from` has
//! run. Keeping every `t_k` and `d_k = dL/dt_k` lets probes read any layer's output and
//! `delta_norm` without extra passes; buffers are reused from step to step.

use ndarray::Array2;

use super::config::{Activation, BlockPart, LayerConfig, NetworkConfig, NormKind, TransformerConfig};
use super::layers::{
    layer_name, ActivationLayer, Attention, Ctx, Dense, Dropout, Layer, LayerKind, NormLayer, Param, Pool, Positional,
    Rnn,
};
use super::rng::{rng, Stream};
use super::{EngineError, Result, Scalar};

/// What a reported layer is.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Position among reported layers (0-based, in forward order).
    pub index: usize,
    /// `dense_0`, `batch_norm_3`, ... (kind and index).
    pub name: String,
    /// What kind of layer it is.
    pub kind: LayerKind,
    /// Activation, when the layer applies one.
    pub activation: Option<Activation>,
    /// Number of learnable scalars.
    pub params: usize,
    /// Output width.
    pub units: usize,
    /// The layer normalises its pre-activations (see `Layer::normalized`).
    pub normalized: bool,
    /// Position in the (expanded) spec tree: indices through nested residual blocks.
    pub path: Vec<usize>,
    /// For a sub-layer of a transformer: its block (within the transformer) and part.
    pub part: Option<(usize, BlockPart)>,
    /// Node index in the flattened network.
    node: usize,
}

/// A residual block or a transformer block: where the residual stream is read.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockInfo {
    /// Position among blocks (0-based, forward order; nested blocks come before the block
    /// that holds them).
    pub index: usize,
    /// `block_0`, `block_1`, ...
    pub name: String,
    /// The residual layer's or the transformer's path in the spec.
    pub path: Vec<usize>,
    /// For a transformer block: its index within the transformer.
    pub within: Option<usize>,
    /// Indices of the reported layers inside the block.
    pub layers: Vec<usize>,
    /// The block's input is `t_input`.
    input: usize,
    /// The block's output is `t_output`.
    output: usize,
}

enum Node<T> {
    Layer(Box<dyn Layer<T>>),
    /// `t_{k+1} = t_k + alpha t_from`.
    Add {
        from: usize,
        alpha: f64,
    },
}

/// See the module doc.
pub struct Network<T> {
    nodes: Vec<Node<T>>,
    info: Vec<LayerInfo>,
    blocks: Vec<BlockInfo>,
    /// `t_0 ..= t_n`.
    acts: Vec<Array2<T>>,
    /// `d_0 ..= d_n`; `d_0` only when the input gradient is asked for.
    deltas: Vec<Array2<T>>,
    input_dim: usize,
    output_dim: usize,
}

impl<T: Scalar> Network<T> {
    /// Builds the network, initialising parameters from `rng(seed, Stream::Init)`.
    pub fn new(config: &NetworkConfig, seed: u64) -> Result<Self> {
        if config.input_dim == 0 {
            return Err(EngineError::config("network.input_dim", "must be at least 1"));
        }
        let mut b = Builder {
            nodes: Vec::new(),
            info: Vec::new(),
            blocks: Vec::new(),
            part: None,
            rng: rng(seed, Stream::Init),
        };
        let output_dim = b.build(&config.layers, config.input_dim, &mut Vec::new())?;
        let n = b.nodes.len();
        Ok(Network {
            nodes: b.nodes,
            info: b.info,
            blocks: b.blocks,
            acts: (0..=n).map(|_| Array2::zeros((0, 0))).collect(),
            deltas: (0..=n).map(|_| Array2::zeros((0, 0))).collect(),
            input_dim: config.input_dim,
            output_dim,
        })
    }

    /// Features the network expects.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// Width of the output.
    pub fn output_dim(&self) -> usize {
        self.output_dim
    }

    /// The reported layers, in forward order.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.info
    }

    /// The layer behind `info`.
    pub fn layer(&self, info: &LayerInfo) -> Option<&dyn Layer<T>> {
        match self.nodes.get(info.node) {
            Some(Node::Layer(l)) => Some(l.as_ref()),
            _ => None,
        }
    }

    /// The output of the layer `info` on the last forward pass.
    pub fn output_of(&self, info: &LayerInfo) -> &Array2<T> {
        &self.acts[info.node + 1]
    }

    /// dL/d(output of `info`) from the last backward pass.
    pub fn delta_of(&self, info: &LayerInfo) -> &Array2<T> {
        &self.deltas[info.node + 1]
    }

    /// The residual and transformer blocks, in forward order of their outputs.
    pub fn blocks(&self) -> &[BlockInfo] {
        &self.blocks
    }

    /// The input of `block` on the last forward pass (the residual stream entering it).
    pub fn block_input(&self, block: &BlockInfo) -> &Array2<T> {
        &self.acts[block.input]
    }

    /// The output of `block` on the last forward pass.
    pub fn block_output(&self, block: &BlockInfo) -> &Array2<T> {
        &self.acts[block.output]
    }

    /// dL/d(input of `block`) from the last backward pass (empty for a block at the network's
    /// input unless the input gradient was asked for).
    pub fn block_input_delta(&self, block: &BlockInfo) -> &Array2<T> {
        &self.deltas[block.input]
    }

    /// The input buffer `t_0`: fill it (e.g. with `Dataset::gather_x`) before `forward`.
    pub fn input_mut(&mut self) -> &mut Array2<T> {
        &mut self.acts[0]
    }

    /// dL/d(input) from the last `backward` with `input_grad`.
    pub fn input_grad(&self) -> &Array2<T> {
        &self.deltas[0]
    }

    /// Runs every node on the input buffer; returns the output. Fails only when a buffer
    /// cannot be allocated: [`EngineError::OutOfMemory`], its buffer named with the layer's.
    pub fn forward(&mut self, ctx: &mut Ctx<'_>) -> Result<&Array2<T>> {
        for k in 0..self.nodes.len() {
            let (done, rest) = self.acts.split_at_mut(k + 1);
            let y = &mut rest[0];
            let done = match &mut self.nodes[k] {
                Node::Layer(layer) => layer.forward(&done[k], y, ctx),
                Node::Add { from, alpha } => {
                    let (x, skip, alpha) = (&done[k], &done[*from], T::of(*alpha));
                    super::layers::ensure_shape(y, x.nrows(), x.ncols(), "the output").map(|()| {
                        ndarray::Zip::from(y).and(x).and(skip).for_each(|y, &a, &b| *y = a + alpha * b);
                    })
                }
            };
            done.map_err(|e| e.of_buffer_owner(&self.node_name(k)))?;
        }
        Ok(&self.acts[self.nodes.len()])
    }

    /// The reported name of node `k` (`rnn_0`), or what a residual sum is (only on the error
    /// path, so it may allocate).
    fn node_name(&self, k: usize) -> String {
        match self.info.iter().find(|i| i.node == k) {
            Some(info) => info.name.clone(),
            None => format!("the residual sum at node {k}"),
        }
    }

    /// The output and the buffer for dL/d(output), for the loss to fill before `backward`.
    pub fn output_and_grad(&mut self) -> (&Array2<T>, &mut Array2<T>) {
        let n = self.nodes.len();
        (&self.acts[n], &mut self.deltas[n])
    }

    /// Back-propagates the output gradient (set through [`Self::output_and_grad`]) to every
    /// parameter, and to the input when `input_grad`. Fails as [`Self::forward`] does.
    pub fn backward(&mut self, input_grad: bool) -> Result<()> {
        for k in (0..self.nodes.len()).rev() {
            let (lower, upper) = self.deltas.split_at_mut(k + 1);
            let dy = &upper[0];
            let wants_dx = k > 0 || input_grad;
            let done = match &mut self.nodes[k] {
                Node::Layer(layer) => {
                    let dx = if wants_dx { Some(&mut lower[k]) } else { None };
                    layer.backward(&self.acts[k], &self.acts[k + 1], dy, dx)
                }
                Node::Add { .. } if wants_dx => {
                    super::layers::ensure_shape(&mut lower[k], dy.nrows(), dy.ncols(), "the input gradients")
                        .map(|()| lower[k].assign(dy))
                }
                Node::Add { .. } => Ok(()),
            };
            done.map_err(|e| e.of_buffer_owner(&self.node_name(k)))?;
            if !wants_dx {
                continue;
            }
            // Skip connections that start at t_k add their gradient now that d_k is written.
            for (i, node) in self.nodes.iter().enumerate().skip(k) {
                if let Node::Add { from, alpha } = node {
                    if *from == k {
                        let (lower, upper) = self.deltas.split_at_mut(i + 1);
                        if *alpha == 1.0 {
                            lower[k] += &upper[0];
                        } else {
                            lower[k].scaled_add(T::of(*alpha), &upper[0]);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Every parameter with the reported layer it belongs to, in a fixed order.
    pub fn params(&self) -> impl Iterator<Item = (&LayerInfo, &Param<T>)> {
        self.info.iter().flat_map(move |info| {
            let params = match &self.nodes[info.node] {
                Node::Layer(l) => l.params(),
                Node::Add { .. } => &[],
            };
            params.iter().map(move |p| (info, p))
        })
    }

    /// Mutable access to every parameter, in the order of [`Self::params`].
    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param<T>> {
        self.nodes.iter_mut().flat_map(|n| match n {
            Node::Layer(l) => l.params_mut().iter_mut(),
            Node::Add { .. } => [].iter_mut(),
        })
    }

    /// See [`Layer::freeze_truncated_state`].
    pub fn freeze_truncated_state(&mut self, frozen: bool) {
        for node in &mut self.nodes {
            if let Node::Layer(l) = node {
                l.freeze_truncated_state(frozen);
            }
        }
    }

    /// See [`Layer::measure_spectra`].
    pub fn measure_spectra(&mut self, on: bool) {
        for node in &mut self.nodes {
            if let Node::Layer(l) = node {
                l.measure_spectra(on);
            }
        }
    }

    /// What one computation of every recurrent layer's `W_hh` spectra costs (see
    /// `train::spectra_gap`).
    pub fn spectra_cost(&self) -> f64 {
        self.nodes.iter().map(|n| if let Node::Layer(l) = n { l.spectra_cost() } else { 0.0 }).sum()
    }

    /// Total learnable scalars.
    pub fn num_params(&self) -> usize {
        self.params().map(|(_, p)| p.len()).sum()
    }
}

struct Builder<T> {
    nodes: Vec<Node<T>>,
    info: Vec<LayerInfo>,
    blocks: Vec<BlockInfo>,
    /// The transformer part being built, for its `LayerInfo`.
    part: Option<(usize, BlockPart)>,
    rng: super::rng::Rng,
}

impl<T: Scalar> Builder<T> {
    /// Appends the nodes of `layers` fed with `width` features; returns the output width.
    fn build(&mut self, layers: &[LayerConfig], mut width: usize, path: &mut Vec<usize>) -> Result<usize> {
        for (i, config) in layers.iter().enumerate() {
            path.push(i);
            width = self.build_one(config, width, path)?;
            path.pop();
        }
        Ok(width)
    }

    /// Appends the nodes of `config`, the layer at `path`, fed with `width` features; returns
    /// the output width.
    fn build_one(&mut self, config: &LayerConfig, width: usize, path: &mut Vec<usize>) -> Result<usize> {
        let name = |kind: &str, info: &[LayerInfo]| layer_name(kind, info.len());
        let layer: Box<dyn Layer<T>> = match config {
            LayerConfig::Dense(d) => Box::new(Dense::new(d, width, &name("dense", &self.info), &mut self.rng)?),
            LayerConfig::BatchNorm(c) => {
                Box::new(NormLayer::new(NormKind::Batch, width, c, &name("batch_norm", &self.info))?)
            }
            LayerConfig::LayerNorm(c) => {
                Box::new(NormLayer::new(NormKind::Layer, width, c, &name("layer_norm", &self.info))?)
            }
            LayerConfig::Dropout { rate } => Box::new(Dropout::new(*rate, width)),
            LayerConfig::Activation { activation, params } => {
                Box::new(ActivationLayer::new(*activation, width, params, &name("activation", &self.info))?)
            }
            LayerConfig::Rnn(c) => Box::new(Rnn::new(c, width, &name("rnn", &self.info), &mut self.rng)?),
            LayerConfig::Attention(c) => {
                Box::new(Attention::new(c, width, &name("attention", &self.info), &mut self.rng)?)
            }
            LayerConfig::Pool(kind) => Box::new(Pool::new(*kind, width)),
            LayerConfig::Positional(c) => Box::new(Positional::new(
                c.kind,
                c.steps,
                width,
                &c.params,
                &name("positional", &self.info),
                &mut self.rng,
            )?),
            LayerConfig::Residual(inner) => {
                let from = self.nodes.len();
                let out = self.build(inner, width, path)?;
                if out != width {
                    return Err(EngineError::Shape {
                        layer: format!("residual block at layer path {path:?}"),
                        expected: format!("inner output width {width} (the block's input width)"),
                        got: format!("{out}"),
                    });
                }
                self.nodes.push(Node::Add { from, alpha: 1.0 });
                self.push_block(path, None, from);
                return Ok(width);
            }
            LayerConfig::Transformer(c) => return self.build_transformer(c, width, path),
        };
        let out = layer.out_dim();
        self.info.push(LayerInfo {
            index: self.info.len(),
            name: layer_name(layer.kind().name(), self.info.len()),
            kind: layer.kind(),
            activation: layer.activation(),
            params: layer.params().iter().map(Param::len).sum(),
            units: out,
            normalized: layer.normalized(),
            path: path.clone(),
            part: self.part,
            node: self.nodes.len(),
        });
        self.nodes.push(Node::Layer(layer));
        Ok(out)
    }

    /// The blocks of a transformer (see [`TransformerConfig`]); every sub-layer's path is the
    /// transformer's.
    fn build_transformer(&mut self, c: &TransformerConfig, d: usize, path: &mut Vec<usize>) -> Result<usize> {
        if c.depth == 0 || c.ffn == 0 {
            return Err(EngineError::config("transformer", "depth and ffn must be at least 1"));
        }
        for b in 0..c.depth {
            let input = self.nodes.len();
            let mut part = |s: &mut Self, p: BlockPart| {
                s.part = Some((b, p));
                let w = s.build_one(&c.part(b, p, d), if p == BlockPart::Linear2 { c.ffn } else { d }, path);
                s.part = None;
                w
            };
            for (branch, norm) in [
                (&[BlockPart::SelfAttn][..], BlockPart::Norm1),
                (&[BlockPart::Linear1, BlockPart::Linear2][..], BlockPart::Norm2),
            ] {
                let from = self.nodes.len();
                if c.norm_first {
                    part(self, norm)?;
                }
                for &p in branch {
                    part(self, p)?;
                }
                self.nodes.push(Node::Add { from, alpha: c.alpha });
                if !c.norm_first {
                    part(self, norm)?;
                }
            }
            self.push_block(path, Some(b), input);
        }
        Ok(d)
    }

    /// Records a block whose input is `t_input` and whose output is the last node's.
    fn push_block(&mut self, path: &[usize], within: Option<usize>, input: usize) {
        let index = self.blocks.len();
        self.blocks.push(BlockInfo {
            index,
            name: layer_name("block", index),
            path: path.to_vec(),
            within,
            layers: self.info.iter().filter(|i| i.node >= input).map(|i| i.index).collect(),
            input,
            output: self.nodes.len(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::{DenseConfig, Init, NormConfig};
    use crate::engine::rng::{rng, Stream};

    /// A forward pass whose output cannot be allocated fails with `OutOfMemory` naming the
    /// buffer and its layer. The input has 2^40 rows of no features (no memory), so the first
    /// dense layer's output would be 2^40 x 1024 f32 values, 2^52 bytes: more than any x86-64
    /// address space, refused by the allocator before the product runs.
    #[test]
    fn an_output_that_cannot_be_allocated_is_an_error_naming_its_layer() {
        let dense = |units| {
            LayerConfig::Dense(DenseConfig {
                units,
                activation: Activation::Linear,
                init: Init::Constant { value: 0.1 },
                bias_init: Init::Constant { value: 0.0 },
                norm: None,
                norm_config: NormConfig::default(),
                params: Default::default(),
            })
        };
        let config = NetworkConfig { input_dim: 1, layers: vec![dense(1024), dense(2)] };
        let mut net = Network::<f32>::new(&config, 0).unwrap();
        let mut r = rng(0, Stream::Dropout);
        let mut ctx =
            Ctx { training: true, dropout: false, probe: false, rng: &mut r, seq_len: 1, bptt_truncate: None };
        *net.input_mut() = Array2::zeros((4, 1));
        assert_eq!(net.forward(&mut ctx).unwrap().dim(), (4, 2));
        *net.input_mut() = Array2::zeros((1 << 40, 0));
        let e = net.forward(&mut ctx).map(|y| y.dim()).unwrap_err();
        assert_eq!(e, EngineError::OutOfMemory { bytes: 1 << 52, what: "the output of dense_0".into() });
        // The network is still usable: the next batch of the old shape runs.
        *net.input_mut() = Array2::zeros((4, 1));
        assert_eq!(net.forward(&mut ctx).unwrap().dim(), (4, 2));
    }
}
