//! Which Burn backend runs the models. One build serves all of them: the [`Device`] picks the
//! backend at run time. `wgpu` (GPUs through Vulkan/Metal/DX12, or Mesa's software Vulkan) needs
//! the crate's non-default `wgpu` feature; asking for it without the feature is an error, not a
//! silent fallback.

use burn::prelude::Device;

use crate::error::{Error, Result};

/// A Burn backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (the default: fastest here on single-stream decoding).
    #[default]
    Flex,
    /// Burn's ndarray CPU backend (deprecated upstream, removed in Burn 0.23).
    Ndarray,
    /// wgpu: a GPU, or a software Vulkan/GL adapter. Needs the `wgpu` feature.
    Wgpu,
}

impl Backend {
    /// Whether this build can run the backend.
    pub fn available(self) -> bool {
        !matches!(self, Backend::Wgpu) || cfg!(feature = "wgpu")
    }

    /// The device. For wgpu this initialises the runtime and fails cleanly when no adapter is
    /// found (rather than panicking on first use, as a lazily created wgpu device would).
    ///
    /// # Errors
    /// wgpu without the `wgpu` feature, or with no usable adapter.
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[allow(deprecated)] // selectable on purpose; see the README's backend measurements
            Backend::Ndarray => Ok(Device::ndarray()),
            Backend::Wgpu => wgpu_device(),
        }
    }
}

/// One wgpu device per process: the wgpu runtime can be initialised once (a second `init`
/// fails with "Service already initialized"), so every model a process loads (`bench policy`'s
/// runs, `iterate`'s rounds, DPO then search) shares the first one; a failure is remembered too.
#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    static DEVICE: std::sync::OnceLock<std::result::Result<Device, String>> =
        std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            Device::wgpu_options()
                .init()
                .map_err(|e| format!("no usable wgpu adapter: {e:?}"))
        })
        .clone()
        .map_err(Error::Model)
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device> {
    Err(Error::Model(
        "this build has no wgpu backend: rebuild with `--features wgpu`".into(),
    ))
}
