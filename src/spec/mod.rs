//! The JSON spec: wire types and validation. (in progress)
