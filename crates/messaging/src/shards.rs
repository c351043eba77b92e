//! Per-topic state split into independently locked shards, so topics never share a lock.

/// Number of shards.
pub(crate) const SHARDS: usize = 16;

/// Returns the shard of a topic name, from its FNV-1a hash: names are short, and the
/// shard only spreads lock traffic.
pub(crate) fn shard_of(name: &str) -> usize {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % SHARDS as u64) as usize
}

/// Returns one value per shard.
pub(crate) fn per_shard<T: Default>() -> Box<[T]> {
    (0..SHARDS).map(|_| T::default()).collect()
}
