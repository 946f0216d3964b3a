//! The `transformer` layer's wire types.

use serde::Serialize;

use super::Activation;

/// `depth` transformer encoder blocks over the time steps, each PyTorch's
/// `nn.TransformerEncoderLayer(d, heads, ffn, dropout=0, activation, batch_first=True,
/// norm_first)` on the input width `d`, with its skip scaled by `alpha` (DeepNorm):
/// post-LN (default) `x = norm1(alpha x + self_attn(x)); x = norm2(alpha x + ffn(x))`, pre-LN
/// (`norm_first`) `x = alpha x + self_attn(norm1(x)); x = alpha x + ffn(norm2(x))`, with
/// `ffn(x) = linear2(activation(linear1(x)))`. A pre-LN stack is usually followed by a
/// `layer_norm` (PyTorch's `nn.TransformerEncoder(..., norm=LayerNorm(d))`). Init as PyTorch:
/// `self_attn` as an `attention` layer, `linear1` and `linear2` weights and biases
/// U(±1/sqrt(fan_in)), norms 1 and 0.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Transformer {
    /// Number of blocks (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<u64>,
    /// Attention heads; must divide the input width `d`.
    pub heads: u64,
    /// Width of the feed-forward layer `linear1` (PyTorch's `dim_feedforward`).
    pub ffn: u64,
    /// `relu` (default) or `gelu`, between `linear1` and `linear2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// Pre-LN (true) or post-LN (false, default, PyTorch's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub norm_first: Option<bool>,
    /// Causal attention mask (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causal: Option<bool>,
    /// Scale of the skip branch (default 1; DeepNorm uses (2 x depth)^(1/4) with post-LN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Layer-norm epsilon (default 1e-5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// Explicit parameters: one object per block, named as `nn.TransformerEncoderLayer`'s
    /// `state_dict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<TransformerBlock>>,
}

/// The explicit parameters of one transformer block, by `nn.TransformerEncoderLayer`'s
/// `state_dict` names (d the width, f the `ffn` width); each replaces its init.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TransformerBlock {
    /// 3d x d.
    #[serde(rename = "self_attn.in_proj_weight", skip_serializing_if = "Option::is_none")]
    pub self_attn_in_proj_weight: Option<Vec<Vec<f64>>>,
    /// 3d.
    #[serde(rename = "self_attn.in_proj_bias", skip_serializing_if = "Option::is_none")]
    pub self_attn_in_proj_bias: Option<Vec<f64>>,
    /// d x d.
    #[serde(rename = "self_attn.out_proj.weight", skip_serializing_if = "Option::is_none")]
    pub self_attn_out_proj_weight: Option<Vec<Vec<f64>>>,
    /// d.
    #[serde(rename = "self_attn.out_proj.bias", skip_serializing_if = "Option::is_none")]
    pub self_attn_out_proj_bias: Option<Vec<f64>>,
    /// f x d.
    #[serde(rename = "linear1.weight", skip_serializing_if = "Option::is_none")]
    pub linear1_weight: Option<Vec<Vec<f64>>>,
    /// f.
    #[serde(rename = "linear1.bias", skip_serializing_if = "Option::is_none")]
    pub linear1_bias: Option<Vec<f64>>,
    /// d x f.
    #[serde(rename = "linear2.weight", skip_serializing_if = "Option::is_none")]
    pub linear2_weight: Option<Vec<Vec<f64>>>,
    /// d.
    #[serde(rename = "linear2.bias", skip_serializing_if = "Option::is_none")]
    pub linear2_bias: Option<Vec<f64>>,
    /// d.
    #[serde(rename = "norm1.weight", skip_serializing_if = "Option::is_none")]
    pub norm1_weight: Option<Vec<f64>>,
    /// d.
    #[serde(rename = "norm1.bias", skip_serializing_if = "Option::is_none")]
    pub norm1_bias: Option<Vec<f64>>,
    /// d.
    #[serde(rename = "norm2.weight", skip_serializing_if = "Option::is_none")]
    pub norm2_weight: Option<Vec<f64>>,
    /// d.
    #[serde(rename = "norm2.bias", skip_serializing_if = "Option::is_none")]
    pub norm2_bias: Option<Vec<f64>>,
}

impl TransformerBlock {
    /// Matrices by `state_dict` name with their (rows, columns) in terms of d and f.
    pub(crate) fn matrices(&self) -> [(&'static str, Option<&Vec<Vec<f64>>>); 4] {
        [
            ("self_attn.in_proj_weight", self.self_attn_in_proj_weight.as_ref()),
            ("self_attn.out_proj.weight", self.self_attn_out_proj_weight.as_ref()),
            ("linear1.weight", self.linear1_weight.as_ref()),
            ("linear2.weight", self.linear2_weight.as_ref()),
        ]
    }

    /// Vectors by `state_dict` name.
    pub(crate) fn vectors(&self) -> [(&'static str, Option<&Vec<f64>>); 8] {
        [
            ("self_attn.in_proj_bias", self.self_attn_in_proj_bias.as_ref()),
            ("self_attn.out_proj.bias", self.self_attn_out_proj_bias.as_ref()),
            ("linear1.bias", self.linear1_bias.as_ref()),
            ("linear2.bias", self.linear2_bias.as_ref()),
            ("norm1.weight", self.norm1_weight.as_ref()),
            ("norm1.bias", self.norm1_bias.as_ref()),
            ("norm2.weight", self.norm2_weight.as_ref()),
            ("norm2.bias", self.norm2_bias.as_ref()),
        ]
    }
}
