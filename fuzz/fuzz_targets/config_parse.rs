//! An operator's config file: loading never panics, and what loads has passed validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::from_toml(text) {
        assert!(
            config.validate().is_ok(),
            "a loaded config fails validation"
        );
    }
});
