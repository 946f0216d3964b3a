//! Every problem of a spec in one answer: parse, semantic and budget problems together.
//!
//! Parsing stops nothing (it collects every structural problem), but validation needs a parsed
//! spec, so a spec with an unknown activation used to hide its other mistakes (`units: 0`, too
//! many steps) until the first was fixed. [`check`] parses; when that fails it *recovers*: it
//! removes each value a parse problem points at from a copy of the document — an optional
//! field then takes its default, an unknown field disappears — parses the copy, validates it
//! against the limits, and adds the problems found there to the parse problems, except those at
//! or under a removed value (they would be about the stand-in, not the client's value).
//!
//! Recovery is skipped (the parse problems alone are reported, as before) when a problem points
//! at the whole document, at an item of an array (removing it would move the items after it,
//! and their pointers with them), or at a value that is not there (a missing required field),
//! and when the copy still does not parse (a required field was removed).

use serde_json::Value;

use super::error::{SpecError, SpecErrors, MAX_ERRORS};
use super::validate::Limits;
use super::{parse, Spec};

/// Parses `value` and validates it against `limits`: the spec, or every problem found.
pub fn check(value: &Value, limits: &Limits) -> Result<Spec, SpecErrors> {
    match parse(value) {
        Ok(spec) => match spec.validate(limits) {
            Ok(_) => Ok(spec),
            Err(e) => Err(e),
        },
        Err(parse_errors) => Err(with_validation(value, parse_errors, limits)),
    }
}

/// `parse_errors` (of `value`), and the validation problems of what parses once the values they
/// point at are removed.
pub fn with_validation(value: &Value, parse_errors: SpecErrors, limits: &Limits) -> SpecErrors {
    let Some((spec, removed)) = recover(value, &parse_errors) else { return parse_errors };
    let Err(found) = spec.validate(limits) else { return parse_errors };
    let mut all = parse_errors.0;
    for e in found.0 {
        let about_a_stand_in = removed.iter().any(|r| under(&e.pointer, r));
        if !about_a_stand_in && !all.contains(&e) && all.len() < MAX_ERRORS {
            all.push(e);
        }
    }
    SpecErrors(all)
}

/// `pointer` is `root` or inside it.
fn under(pointer: &str, root: &str) -> bool {
    pointer == root || pointer.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// The spec parsed from `value` without the values `errors` point at, and their pointers.
fn recover(value: &Value, errors: &SpecErrors) -> Option<(Spec, Vec<String>)> {
    let mut copy = value.clone();
    let mut removed: Vec<String> = Vec::new();
    for SpecError { pointer, .. } in &errors.0 {
        if removed.iter().any(|r| under(pointer, r)) {
            continue;
        }
        let (parent, key) = pointer.rsplit_once('/')?;
        let key = key.replace("~1", "/").replace("~0", "~");
        match copy.pointer_mut(parent)? {
            Value::Object(map) => {
                map.remove(&key)?;
            }
            _ => return None,
        }
        removed.push(pointer.clone());
    }
    let spec = parse(&copy).ok()?;
    Some((spec, removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn three_independent_mistakes_are_reported_together() {
        // An unknown activation (parse), zero units (semantic) and too many steps (budget).
        let v = json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 0, "activation": "relux"},
                                                            {"type": "dense", "units": 2}]},
                       "data": {"type": "xor"}, "training": {"steps": 2000000}});
        let errors = check(&v, &Limits::default()).expect_err("invalid");
        let pointers = errors.pointers();
        assert!(pointers.contains(&"/model/layers/0/activation"), "{errors}");
        assert!(pointers.contains(&"/model/layers/0/units"), "{errors}");
        assert!(pointers.contains(&"/training/steps"), "{errors}");
        assert_eq!(pointers.len(), 3, "{errors}");
    }

    #[test]
    fn nothing_is_said_about_the_stand_in_of_a_removed_value() {
        // `weight` has the wrong shape for a dense layer of 3 units only once it is a matrix;
        // as a string it is a parse problem, and its removal must not produce another about it.
        let v = json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 2, "weight": "zeros",
                                                            "colour": "red"}]},
                       "data": {"type": "xor"}});
        let errors = check(&v, &Limits::default()).expect_err("invalid");
        assert_eq!(errors.pointers(), ["/model/layers/0/weight", "/model/layers/0/colour"], "{errors}");
    }

    #[test]
    fn a_problem_in_an_array_item_or_a_missing_field_gives_the_parse_problems_alone() {
        let unknown_layer = json!({"model": {"input_dim": 2, "layers": [{"type": "convolution"}, {"type": "dense", "units": 0}]},
                                   "data": {"type": "xor"}, "training": {"steps": 2000000}});
        let errors = check(&unknown_layer, &Limits::default()).expect_err("invalid");
        assert_eq!(errors.pointers(), ["/model/layers/0/type"], "{errors}");
        let missing_units = json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": "two"}]},
                                   "data": {"type": "xor"}, "training": {"steps": 2000000}});
        let errors = check(&missing_units, &Limits::default()).expect_err("invalid");
        assert_eq!(errors.pointers(), ["/model/layers/0/units"], "{errors}");
    }

    #[test]
    fn a_valid_spec_passes_and_an_invalid_one_without_parse_problems_is_validated_as_before() {
        let ok = json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 2}]}, "data": {"type": "xor"}});
        assert!(check(&ok, &Limits::default()).is_ok());
        let semantic = json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 0}, {"type": "dense", "units": 2}]},
                              "data": {"type": "xor"}});
        let direct = parse(&semantic).expect("parses").validate(&Limits::default()).expect_err("invalid");
        assert_eq!(check(&semantic, &Limits::default()).expect_err("invalid"), direct);
    }
}
