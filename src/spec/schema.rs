//! The OpenAPI schemas of the spec's tagged unions (documentation only): what utoipa derives from
//! [`types`](super::types), reshaped into the form clients and code generators read, and the one
//! place that states how the parser (`parse::tagged`) reads a tagged value.
//!
//! utoipa derives a `#[serde(tag = "type")]` enum as a `oneOf` of anonymous objects (or of
//! `allOf [the variant's struct, {"type"}]`) with no discriminator, and a derive cannot know
//! that the parser also takes a bare type name (`"activation": "relu"`) for a variant without a
//! required field. [`reshape`] keeps every field and description of the derived schemas and
//! rearranges them:
//!
//! - each variant is a named schema that carries its `type`: `{Union}{Variant}`
//!   (`ActivationLeakyRelu`, `InitHeNormal`, `DataXor`, ...), or for a layer its own struct
//!   (`Dense`, `Rnn`, ...), which only ever appears as a layer;
//! - `{Union}Object` is the `oneOf` of those with a `discriminator` on `type` mapping each tag to
//!   its schema, `{Union}Name` the string enum of the bare names (the variants that require
//!   nothing but `type`), and `{Union}` is `oneOf [{Union}Name, {Union}Object]`. A union without
//!   bare names (`Clip`) is its discriminated `oneOf` directly;
//! - `Data`, a source with the fields every source shares (`#[serde(flatten)]`), gets one variant
//!   per source (`DataXor`, `DataInline`, ...) holding those fields too; `DataSource` never
//!   appears alone on the wire, so it is no schema of its own;
//! - the inline targets (`InlineTargets`, `InlineSequenceTargets`) become `anyOf`: the parser
//!   tells class labels from numbers by how they are written (`1` vs `1.0`), which JSON Schema
//!   cannot (every integer is a number), so `[0, 1]` matches two branches.
//!
//! The bodies that take a spec or a preset's name are documented by two types of their own,
//! [`SubmitRequest`] and [`PresetRequest`] (the parser reads them, not serde).
//!
//! `spec/tests/schema.rs` checks the shape, that every bare name parses (and no other), and that
//! every example, preset and fixture spec validates against the result. `docs/spec.md` documents
//! these schemas one table per object, and `tests/spec_docs.rs` holds it to them.

use std::collections::BTreeMap;

use utoipa::openapi::schema::{AnyOf, Discriminator, Object, ObjectBuilder, OneOf, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::ToSchema;

use super::types::Spec;

/// The body of `POST /v1/jobs` and `POST /v1/analyze`, and an experiment's `base`: a spec, or a
/// preset by name (documentation only: the parser reads it).
#[derive(Debug, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SubmitRequest {
    /// A spec.
    Spec(Box<Spec>),
    /// A preset by name.
    Preset(PresetRequest),
}

/// `{"preset": NAME}`.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PresetRequest {
    /// One of `GET /v1/presets`.
    #[schema(example = "relu-he-30")]
    pub preset: String,
}

/// The `components/schemas` map of an OpenAPI document.
pub type Schemas = BTreeMap<String, RefOr<Schema>>;

/// The property that tags every variant.
const TAG: &str = "type";

/// How the variants of a derived union are laid out, and so named.
enum Variants {
    /// Named-field variants, derived as inline objects: each becomes `{union}{Tag}`.
    Inline,
    /// Newtype variants, derived as `allOf [$ref Struct, {"type"}]`: the struct gets the `type`.
    Structs,
    /// A struct that flattens the union named here and adds its own fields: each variant of that
    /// union, with those fields, becomes `{union}{Tag}`.
    Flattened(&'static str),
}

/// The tagged unions of a spec, by the name of their derived schema.
const UNIONS: [(&str, Variants); 8] = [
    ("Layer", Variants::Structs),
    ("Activation", Variants::Inline),
    ("Init", Variants::Inline),
    ("Norm", Variants::Inline),
    ("Optimizer", Variants::Inline),
    ("Clip", Variants::Inline),
    ("Schedule", Variants::Inline),
    ("Data", Variants::Flattened("DataSource")),
];

/// Untagged unions whose branches overlap in JSON Schema (see the module doc).
const OVERLAPPING: [&str; 2] = ["InlineTargets", "InlineSequenceTargets"];

/// Reshapes the derived schemas of the spec's unions (see the module doc). A schema that is
/// absent (a document without the spec) or not shaped as derived is left as it is.
pub fn reshape(schemas: &mut Schemas) {
    for (name, variants) in &UNIONS {
        if let Some(variants) = split(schemas, name, variants) {
            assemble(schemas, name, variants);
        }
    }
    for name in OVERLAPPING {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = schemas.get(name) {
            let mut any_of = AnyOf::new();
            any_of.items.clone_from(&one_of.items);
            any_of.description.clone_from(&one_of.description);
            schemas.insert(name.to_owned(), RefOr::T(Schema::AnyOf(any_of)));
        }
    }
}

/// One variant: its tag, the name of its schema, and the schema.
struct Variant {
    tag: String,
    name: String,
    schema: Object,
}

/// The union's description and its variants, each with its `type` first; removes the schemas
/// that only served to build them (a flattened source).
fn split(schemas: &mut Schemas, union: &str, layout: &Variants) -> Option<(Option<String>, Vec<Variant>)> {
    let derived = schemas.get(union)?;
    let (description, variants) = match layout {
        Variants::Inline => {
            let Schema::OneOf(one_of) = schema(derived)? else { return None };
            let variants = one_of
                .items
                .iter()
                .map(|item| match schema(item)? {
                    Schema::Object(object) => prefixed(union, object.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            (one_of.description.clone(), variants)
        }
        Variants::Structs => {
            let Schema::OneOf(one_of) = schema(derived)? else { return None };
            let variants = one_of.items.iter().map(|item| tagged_struct(schemas, item)).collect::<Option<Vec<_>>>()?;
            (one_of.description.clone(), variants)
        }
        Variants::Flattened(source) => {
            let Schema::AllOf(all_of) = schema(derived)? else { return None };
            let [RefOr::Ref(source_ref), RefOr::T(Schema::Object(shared))] = all_of.items.as_slice() else {
                return None;
            };
            if source_ref.ref_location != reference(source) {
                return None;
            }
            let Schema::OneOf(sources) = schema(schemas.get(*source)?)? else { return None };
            let variants = sources
                .items
                .iter()
                .map(|item| match schema(item)? {
                    Schema::Object(object) => {
                        let mut object = object.clone();
                        for (key, property) in &shared.properties {
                            object.properties.insert(key.clone(), property.clone());
                        }
                        object.required.extend(shared.required.iter().cloned());
                        prefixed(union, object)
                    }
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            let description = all_of.description.clone();
            schemas.remove(*source);
            (description, variants)
        }
    };
    Some((description, variants))
}

/// An inline variant named `{union}{Tag}`.
fn prefixed(union: &str, object: Object) -> Option<Variant> {
    let tag = tag_of(&object)?;
    let name = format!("{union}{}", pascal(&tag));
    Some(Variant { tag, name, schema: with_tag_first(object) })
}

/// A newtype variant `allOf [$ref Struct, {"type"}]`: the struct's schema with the `type`.
fn tagged_struct(schemas: &Schemas, item: &RefOr<Schema>) -> Option<Variant> {
    let Schema::AllOf(all_of) = schema(item)? else { return None };
    let [RefOr::Ref(inner), RefOr::T(Schema::Object(tag_part))] = all_of.items.as_slice() else { return None };
    let name = inner.ref_location.strip_prefix("#/components/schemas/")?.to_owned();
    let Schema::Object(mut object) = schema(schemas.get(&name)?)?.clone() else { return None };
    let tag = tag_of(tag_part)?;
    object.properties.insert(TAG.to_owned(), tag_part.properties.get(TAG)?.clone());
    object.required.push(TAG.to_owned());
    Some(Variant { tag, name, schema: with_tag_first(object) })
}

/// Writes the variants and the union schemas built from them.
fn assemble(schemas: &mut Schemas, union: &str, (description, variants): (Option<String>, Vec<Variant>)) {
    let mut tagged = OneOf::new();
    tagged.discriminator = Some(Discriminator::with_mapping(
        TAG,
        variants.iter().map(|v| (v.tag.clone(), reference(&v.name))).collect::<Vec<_>>(),
    ));
    tagged.items = variants.iter().map(|v| RefOr::Ref(Ref::from_schema_name(&v.name))).collect();
    let bare: Vec<String> =
        variants.iter().filter(|v| v.schema.required.iter().all(|r| r == TAG)).map(|v| v.tag.clone()).collect();
    for variant in variants {
        schemas.insert(variant.name, RefOr::T(Schema::Object(variant.schema)));
    }
    if bare.is_empty() {
        tagged.description = description;
        schemas.insert(union.to_owned(), RefOr::T(Schema::OneOf(tagged)));
        return;
    }
    let (name, object) = (format!("{union}Name"), format!("{union}Object"));
    tagged.description = Some(format!(
        "{union} as an object, tagged by `type` (the discriminator): the fields after `type` depend on it."
    ));
    let names = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(bare))
        .description(Some(format!(
            "{union} as its type name alone, the same as `{{\"type\": NAME}}` with every other field at its default; \
             only the types without a required field can be written so."
        )))
        .build();
    let mut either = OneOf::new();
    either.items = vec![RefOr::Ref(Ref::from_schema_name(&name)), RefOr::Ref(Ref::from_schema_name(&object))];
    either.description = description;
    schemas.insert(name, RefOr::T(Schema::Object(names)));
    schemas.insert(object, RefOr::T(Schema::OneOf(tagged)));
    schemas.insert(union.to_owned(), RefOr::T(Schema::OneOf(either)));
}

/// The schema itself, not a reference.
fn schema(item: &RefOr<Schema>) -> Option<&Schema> {
    match item {
        RefOr::T(schema) => Some(schema),
        RefOr::Ref(_) => None,
    }
}

/// The value of an object's `type` property (`{"enum": ["relu"]}`).
fn tag_of(object: &Object) -> Option<String> {
    let RefOr::T(Schema::Object(tag)) = object.properties.get(TAG)? else { return None };
    tag.enum_values.as_ref()?.first()?.as_str().map(str::to_owned)
}

/// The object with `type` as its first property and first required name.
fn with_tag_first(mut object: Object) -> Object {
    if let Some(tag) = object.properties.shift_remove(TAG) {
        let rest = std::mem::take(&mut object.properties);
        object.properties.insert(TAG.to_owned(), tag);
        object.properties.extend(rest);
    }
    object.required.retain(|r| r != TAG);
    object.required.insert(0, TAG.to_owned());
    object
}

/// `#/components/schemas/{name}`.
fn reference(name: &str) -> String {
    format!("#/components/schemas/{name}")
}

/// `leaky_relu` -> `LeakyRelu`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect()
}
