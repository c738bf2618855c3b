//! `[store]`: the local store's memory. Only its settings live here; the store itself is
//! `store`'s, which alone names its engine.

use serde::{Deserialize, Serialize};

use super::section::config_section;

config_section! {
    /// The store's settings.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct StoreSettings in "store." {
        /// bytes of the store's page cache (sled), default 64 MiB
        ///
        /// At least 1 MiB. sled's own default, 1 GiB, is more than a small appliance should
        /// give a cache; reads beyond it come from the operating system's file cache. With no
        /// connection open the server stays within this plus 64 MiB.
        pub cache_capacity: u64 = 64 << 20,
            check: |bytes| (*bytes < (1 << 20)).then_some("at least 1 MiB (1048576 bytes)");
    }
}
