//! Placeholder: being ported.
