use super::*;

#[test]
fn a_url_is_logged_without_its_password() {
    assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
    assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(redact("postgres://h/db?sslmode=disable&password=x"), "postgres://h/db?sslmode=disable&password=***");
    assert_eq!(redact("not a url"), "not a url");
    let debug = format!("{:?}", PostgresConfig::new("postgres://u:secret@h/db"));
    assert!(!debug.contains("secret"), "{debug}");
}

#[test]
fn schema_names_are_plain_identifiers() {
    assert!(valid_schema("conformance_0192abc"));
    assert!(valid_schema("_x"));
    for bad in ["", "1a", "a-b", "a;drop", "a b", "\"a\"", &"a".repeat(64)] {
        assert!(!valid_schema(bad), "{bad}");
    }
}

#[test]
fn url_parts_are_percent_encoded() {
    assert_eq!(encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    assert_eq!(encode("plain-1.2_x~"), "plain-1.2_x~");
}
