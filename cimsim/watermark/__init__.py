"""Per-chip watermark signatures: the owner's kit, per-chip assembly, black-box verification and
verification under noise (:mod:`cimsim.adapters.watermark` holds the branch machinery)."""
