//! Open client connections per address (IPv6 by /64, as the guard counts).
//!
//! `max_connections` bounds connections over all clients; without a share
//! per address, one host that opens connections and keeps them alive (an
//! HTTP/2 connection that only sends PINGs looks active) takes every slot
//! and the next client waits in the kernel's backlog for good.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

/// Open connections per client address, so one host cannot take every slot.
#[derive(Default)]
pub struct ConnCap {
    open: Mutex<HashMap<IpNet, usize>>,
}

/// One open connection's place in its address's share; given back on drop.
pub struct ConnSlot {
    cap: Arc<ConnCap>,
    key: IpNet,
}

impl ConnCap {
    /// A place for one more connection from `ip`, or None when its address
    /// already holds `max`.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ConnSlot> {
        let key = rampart_guard::client_key(ip);
        let mut open = self.open.lock().expect("not poisoned");
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            cap: self.clone(),
            key,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self.cap.open.lock().expect("not poisoned");
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_share_and_gives_it_back() {
        let cap = Arc::new(ConnCap::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| cap.try_take(a, 3).unwrap()).collect();
        assert!(
            cap.try_take(a, 3).is_none(),
            "a fourth from the same address"
        );
        assert!(
            cap.try_take(b, 3).is_some(),
            "another address still gets one"
        );
        // One /64 is one client.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff".parse().unwrap();
        let _x = cap.try_take(v6a, 1).unwrap();
        assert!(cap.try_take(v6b, 1).is_none());
        drop(held);
        let again = cap.try_take(a, 3);
        assert!(again.is_some(), "closed connections give their place back");
        assert_eq!(
            cap.open.lock().unwrap().get(&rampart_guard::client_key(a)),
            Some(&1)
        );
        drop(again);
        assert!(
            !cap.open
                .lock()
                .unwrap()
                .contains_key(&rampart_guard::client_key(a)),
            "no entry is kept for an idle address"
        );
    }
}
