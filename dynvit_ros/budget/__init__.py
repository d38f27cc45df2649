# SPDX-License-Identifier: Apache-2.0
"""Budget policy: load to budget, budget to level, which budget is in force, system load."""
