//! How many connections are open, in all and per client address; a new one past either cap
//! is refused. Counted once per connection (open and close), never per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections_per_ip` reached for this address.
    PerClient,
    /// `max_connections` reached.
    Total,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::PerClient => "per_client",
            Refused::Total => "total",
        }
    }
}

pub struct Caps {
    /// The listener's name in metrics (`public`, `admin`).
    listener: &'static str,
    max_total: usize,
    /// 0 = no per-address cap.
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection counted as open; uncounted when dropped.
pub struct Held {
    caps: Arc<Caps>,
    ip: IpAddr,
}

impl Caps {
    pub fn new(listener: &'static str, max_total: usize, max_per_ip: usize) -> Self {
        Self {
            listener,
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Held, Refused> {
        let ip = client_of(ip);
        let taken = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Refused::Total);
        }
        if self.max_per_ip > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(per_ip);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::PerClient);
            }
            *n += 1;
        }
        switchyard_gateway::metrics::connections_open(self.listener, 1.0);
        Ok(Held {
            caps: self.clone(),
            ip,
        })
    }
}

/// The address a cap counts: an IPv4 address (also when mapped into IPv6), or an IPv6 /64,
/// the block one host or subscriber gets, which it can rotate through at will.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let caps = &self.caps;
        if caps.max_per_ip > 0 {
            let mut per_ip = caps.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        caps.total.fetch_sub(1, Ordering::AcqRel);
        switchyard_gateway::metrics::connections_open(caps.listener, -1.0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_address_and_in_all_and_free_on_close() {
        let caps = Arc::new(Caps::new("test", 3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err(), Some(Refused::PerClient));
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).err(), Some(Refused::Total));
        drop(a1);
        let _a3 = caps.admit(a).unwrap();
        // One IPv6 /64 is one client; a mapped IPv4 address is the IPv4 one.
        let v6 = Arc::new(Caps::new("test", 10, 1));
        let _p = v6.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            v6.admit("2001:db8:1:2:ffff::9".parse().unwrap()).err(),
            Some(Refused::PerClient)
        );
        let _q = v6.admit("2001:db8:1:3::1".parse().unwrap()).unwrap();
        let _r = v6.admit("10.0.0.9".parse().unwrap()).unwrap();
        assert_eq!(
            v6.admit("::ffff:10.0.0.9".parse().unwrap()).err(),
            Some(Refused::PerClient)
        );
        // No per-address cap: only the total counts.
        let open = Arc::new(Caps::new("test", 2, 0));
        let _x = open.admit(a).unwrap();
        let _y = open.admit(a).unwrap();
        assert_eq!(open.admit(b).err(), Some(Refused::Total));
    }
}
