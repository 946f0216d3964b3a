//! The `gradscope` binary.

fn main() {}
