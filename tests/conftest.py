import os

import jax
from hypothesis import settings

jax.config.update("jax_enable_x64", True)

# Property tests draw the same examples on every machine ("ci", the default), so that a fresh
# machine cannot find a new example that a reference solver fails on and turn CI red at random;
# HYPOTHESIS_PROFILE=explore draws new random examples (for hunting bugs, not for CI).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
