//! libFuzzer target: the virtio-mmio transport with virtio-net behind it, driven by
//! arbitrary bytes (see `strata_hostagent::vmm::devices::virtio::fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata_hostagent::vmm::devices::virtio::fuzz::run(data);
});
