"""Sampler names: the friendly ones of the research log and sd-scripts' own (train_util.get_my_scheduler,
gen_img.py). The same table serves the samples drawn during training and generation grids.
"""

from __future__ import annotations

from wrapper.errors import ConfigError, did_you_mean

SD_SCRIPTS_SAMPLERS = (
    "ddim",
    "pndm",
    "lms",
    "euler",
    "euler_a",
    "heun",
    "dpm_2",
    "dpm_2_a",
    "dpmsolver",
    "dpmsolver++",
    "dpmsingle",
    "k_lms",
    "k_euler",
    "k_euler_a",
    "k_dpm_2",
    "k_dpm_2_a",
)

# Friendly name -> sd-scripts name. "DPM++ 2M" is DPMSolverMultistep with algorithm_type
# dpmsolver++ (solver order 2, no Karras sigmas); "DPM++ 2S" is the single-step solver.
FRIENDLY_SAMPLERS = {
    "dpm++2m": "dpmsolver++",
    "dpm2m": "dpmsolver",
    "dpm++2s": "dpmsingle",
    "euler": "euler",
    "euler_a": "euler_a",
    "heun": "heun",
    "ddim": "ddim",
    "pndm": "pndm",
    "lms": "lms",
    "dpm2": "dpm_2",
    "dpm2_a": "dpm_2_a",
}
_ALIASES = {
    "k_lms": "lms",
    "k_euler": "euler",
    "k_euler_a": "euler_a",
    "k_dpm_2": "dpm_2",
    "k_dpm_2_a": "dpm_2_a",
}
_FRIENDLY_OF = {kohya: friendly for friendly, kohya in FRIENDLY_SAMPLERS.items()}

def normalize_sampler(name: str) -> str:
    """Lower-case, drop spaces, '-' -> '_': "DPM++ 2M" -> "dpm++2m", "Euler-A" -> "euler_a"."""
    return name.strip().lower().replace(" ", "").replace("-", "_")


def resolve_sampler(name: str) -> tuple[str, str]:
    """Return (friendly name, gen_img.py name) for a friendly or sd-scripts sampler name.

    An unknown name is an error, never the silent DDIM fallback of sd-scripts' training sampler.
    """
    key = normalize_sampler(name)
    if key in FRIENDLY_SAMPLERS:
        return key, FRIENDLY_SAMPLERS[key]
    kohya = _ALIASES.get(key, key)
    if kohya in _FRIENDLY_OF:
        return _FRIENDLY_OF[kohya], kohya
    known = [*FRIENDLY_SAMPLERS, *SD_SCRIPTS_SAMPLERS]
    note = " (sd-scripts v0.10.1 gen_img.py has no Karras sigmas)" if "karras" in key else ""
    hint = did_you_mean(key.replace("karras", "").strip("_"), known)
    raise ConfigError(
        f"unknown sampler {name!r}{hint}{note}; expected one of "
        f"{', '.join(FRIENDLY_SAMPLERS)} (or an sd-scripts name such as dpmsolver++)"
    )
