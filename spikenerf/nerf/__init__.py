"""The NeRF wing: spiking NeRFs as nerfstudio methods (``ns-train spikingnerf``, ``spiknerf``, ...).

Rooms, in the order a ray meets them:

- ``method_configs``: every method (``MethodSpecification``), built by the one ``make_trainer_config``;
  the ``pyproject.toml`` entry points all name it. ``datamanager``: the scene check every method uses.
  ``llff_dataparser``: the ``llff-data`` parser (LLFF's ``poses_bounds.npy``, forward-facing scenes);
  ``ndc``: NeRF's normalized device coordinates for them (pure functions).
- ``model`` (``SpikingNeRFModel``: the grids, ``get_outputs``, losses; each training step handed to its
  ``coarse_to_fine.CoarseToFine``; the scene decided by ``scene``) -> ``sampling``
  (``sample_along_rays``; the occupancy cache: ``mask_cache``, ``refresh_occupancy``) -> ``rendering``
  (the density activation, alpha and weight masks, compositing) -> ``field`` (grids + spiking colour network) ->
  ``time_layout`` (where the LIF layers' time runs, chosen by ``choose_layout``) on ``packing`` (where each
  valid sample goes in the ray-aligned layouts) and ``grid`` (``DenseGrid``, ``march``; C kernels in ``csrc/``).
- ``coarse_to_fine``: DVGO's stages, up-scales, occupancy cache, ray mask and per-voxel lr for the model;
  ``grid_training``: the parts any grid backbone reuses (``GridSchedule``, ``OccupancyCache``, up-scaling,
  optimiser re-pointing, DDP gradient averaging).
- ``metrics``: image quality, op counts and energy shared by every model (energy constants are the core's,
  ``spikenerf.snn.energy``).
- Spik-NeRF: ``spiknerf`` (voxel-grid model / field), ``nerf_mlp`` (the NeRF MLP backbone), ``spiknerf_neuron``
  (their neuron factory, its deployed form and the options both models share), ``distill`` (ANN-teacher distillation).
- Plumbing: ``optim`` (fused Adam), ``schedulers`` (float-only LR schedule), ``video`` (ffmpeg for
  ``ns-render``), ``quickstart`` (``spikenerf-quickstart``: train, evaluate, render the bundled scene).

Nothing is imported here so that ``spikenerf.nerf.packing`` stays cheap to import.
"""
