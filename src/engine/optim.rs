//! Optimisers and gradient clipping. (in progress: being written)
