//! Parsing of the attention and transformer layers.

use serde_json::Value;

use super::{p_bool, p_f64, p_list, p_matrix, p_u64, p_vector, parse_activation, Collector, Obj};
use crate::spec::types::{Attention, Transformer, TransformerBlock};

pub(in crate::spec) fn parse_attention(cx: &mut Collector, o: &mut Obj<'_>) -> Option<Attention> {
    let heads = o.req(cx, "heads", p_u64);
    let causal = o.opt(cx, "causal", p_bool);
    let in_proj_weight = o.opt(cx, "in_proj_weight", p_matrix);
    let in_proj_bias = o.opt(cx, "in_proj_bias", p_vector);
    let out_proj_weight = o.opt(cx, "out_proj.weight", p_matrix);
    let out_proj_bias = o.opt(cx, "out_proj.bias", p_vector);
    Some(Attention {
        heads: heads?,
        causal: causal?,
        in_proj_weight: in_proj_weight?,
        in_proj_bias: in_proj_bias?,
        out_proj_weight: out_proj_weight?,
        out_proj_bias: out_proj_bias?,
    })
}

pub(in crate::spec) fn parse_transformer(cx: &mut Collector, o: &mut Obj<'_>) -> Option<Transformer> {
    let depth = o.opt(cx, "depth", p_u64);
    let heads = o.req(cx, "heads", p_u64);
    let ffn = o.req(cx, "ffn", p_u64);
    let activation = o.opt(cx, "activation", parse_activation);
    let norm_first = o.opt(cx, "norm_first", p_bool);
    let causal = o.opt(cx, "causal", p_bool);
    let alpha = o.opt(cx, "alpha", p_f64);
    let eps = o.opt(cx, "eps", p_f64);
    let blocks = o.opt(cx, "blocks", |cx, v, p| p_list(cx, v, p, "blocks", parse_transformer_block));
    Some(Transformer {
        depth: depth?,
        heads: heads?,
        ffn: ffn?,
        activation: activation?,
        norm_first: norm_first?,
        causal: causal?,
        alpha: alpha?,
        eps: eps?,
        blocks: blocks?,
    })
}

fn parse_transformer_block(cx: &mut Collector, v: &Value, ptr: &str) -> Option<TransformerBlock> {
    let mut o = Obj::new(cx, v, ptr, "a transformer block's parameters")?;
    let mut m = |name| o.opt(cx, name, p_matrix);
    let (aw, ow, l1w, l2w) =
        (m("self_attn.in_proj_weight"), m("self_attn.out_proj.weight"), m("linear1.weight"), m("linear2.weight"));
    let mut v = |name| o.opt(cx, name, p_vector);
    let (ab, ob, l1b, l2b) =
        (v("self_attn.in_proj_bias"), v("self_attn.out_proj.bias"), v("linear1.bias"), v("linear2.bias"));
    let (n1w, n1b, n2w, n2b) = (v("norm1.weight"), v("norm1.bias"), v("norm2.weight"), v("norm2.bias"));
    o.finish(cx);
    Some(TransformerBlock {
        self_attn_in_proj_weight: aw?,
        self_attn_in_proj_bias: ab?,
        self_attn_out_proj_weight: ow?,
        self_attn_out_proj_bias: ob?,
        linear1_weight: l1w?,
        linear1_bias: l1b?,
        linear2_weight: l2w?,
        linear2_bias: l2b?,
        norm1_weight: n1w?,
        norm1_bias: n1b?,
        norm2_weight: n2w?,
        norm2_bias: n2b?,
    })
}
