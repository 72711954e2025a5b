from __future__ import annotations

from hypothesis.configuration import set_hypothesis_home_dir

from driver.guest.debs import cache_dir

# Hypothesis keeps caches of its own (by default in `.hypothesis` under the
# working directory): they go to vmtui's cache, so a test run leaves nothing
# in the checkout.
set_hypothesis_home_dir(cache_dir() / "hypothesis")
