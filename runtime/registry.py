"""The runtime's module list: the order hooks run in and the calls the executive knows."""
from __future__ import annotations

from runtime.module import Module
from runtime.modules.balances import Balances
from runtime.modules.history import History
from runtime.modules.marketplace import Marketplace
from runtime.modules.rewards import Rewards
from runtime.modules.session import Session
from runtime.modules.staking import Staking
from runtime.modules.system import System
from runtime.modules.tasks import Tasks
from runtime.modules.treasury import Treasury

MODULES: list[type[Module]] = [System, Balances, Treasury, Session, History, Staking, Rewards, Tasks, Marketplace]
