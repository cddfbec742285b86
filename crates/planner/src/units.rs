//! Byte sizes for people: binary units (GiB), as GPU memory is counted.

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// "8.00 GiB", "512.0 MiB", "128 KiB", "12 B".
pub fn format_bytes(b: u64) -> String {
    if b >= GIB {
        format!("{:.2} GiB", b as f64 / GIB as f64)
    } else if b >= MIB {
        format!("{:.1} MiB", b as f64 / MIB as f64)
    } else if b >= KIB {
        format!("{:.0} KiB", b as f64 / KIB as f64)
    } else {
        format!("{b} B")
    }
}

/// Bytes as fractional GiB, for JSON and tables.
pub fn gib(b: u64) -> f64 {
    b as f64 / GIB as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_binary_units() {
        assert_eq!(format_bytes(8 * GIB), "8.00 GiB");
        assert_eq!(format_bytes(512 * MIB), "512.0 MiB");
        assert_eq!(format_bytes(128 * KIB), "128 KiB");
        assert_eq!(format_bytes(12), "12 B");
        assert_eq!(gib(3 * GIB / 2), 1.5);
    }
}
