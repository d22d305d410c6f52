//! hash_bucket's hash. (to be written)
