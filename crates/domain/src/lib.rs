//! Caravan domain: pure types and rules.
