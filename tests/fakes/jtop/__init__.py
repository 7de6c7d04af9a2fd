"""Fake jetson-stats client (`from jtop import jtop, JtopException`): the public API of the jtop client class of
jetson-stats 4.2.12 (the last 4.2.x; JetPack 4's Python 3.6) and 7.2.0, as in rbonghi/jetson_stats at those tags
(jtop/jtop.py, jtop/core/*.py: the two tags have the same client API). Without the jtop.service socket: the data
the service would send comes from _boards.py.

Environment, read when a jtop() is made:
  FAKE_JTOP_VERSION  4.2.12 (default) or 7.2.0 (any 4.x.y or 7.x.y)
  FAKE_JTOP_BOARD    nano (default: Jetson Nano, L4T 32.7), orin (Orin Nano, L4T 36), orin-jp5 (Orin Nano, L4T 35)
  FAKE_JTOP_SERVICE  up (default); down: start() raises JtopException as jtop.py does when the jtop.service
                     socket is missing or refuses (FileNotFoundError / ConnectionRefusedError errno 2 or 111);
                     denied: as when the user may not open the socket (errno 13)
  FAKE_JTOP_POWER    ina3221 (default); none: jtop.power is {} (PowerService.get_status on a board without
                     INA3221 monitors or power supplies)

For tests: INSTANCES lists every jtop made; each counts start_calls and close_calls; lose_connection(exc) makes
the reader thread's error appear as jtop.run() stores it (ok() re-raises it).
"""
import copy
import os
from datetime import datetime, timedelta

from jtop import _boards

INSTANCES = []


def _version():
    text = os.environ.get("FAKE_JTOP_VERSION", "4.2.12")
    return text, tuple(int(p) for p in text.split(".")[:2])


__version__ = _version()[0]


class JtopException(Exception):
    """jtop/core/exceptions.py (same in 4.2.12 and 7.2.0)."""

    def __init__(self, message, errors=""):
        super(JtopException, self).__init__(message, errors)
        self.message = message
        self.errors = errors

    def __repr__(self):
        return str(self.message)

    def __str__(self):
        return str(self.message)


class GenericInterface(object):
    """jtop/core/common.py GenericInterface: read like a dict, not a dict."""

    def __init__(self):
        self._controller = None
        self._init = None
        self._data = {}

    def _initialize(self, controller, init={}):
        self._controller = controller
        self._init = init

    def _update(self, data):
        self._data = data

    def items(self):
        return self._data.items()

    def keys(self):
        return self._data.keys()

    def values(self):
        return self._data.values()

    def get(self, key, default=None):
        return self._data.get(key, default)

    def __len__(self):
        return len(self._data)

    def __getitem__(self, key):
        return self._data[key]

    def __contains__(self, key):
        return key in self._data

    def __iter__(self):
        return iter(self._data)

    def __eq__(self, other):
        if isinstance(other, GenericInterface):
            return self._data == other._data
        if isinstance(other, dict):
            return self._data == other
        return NotImplemented

    def __repr__(self):
        return repr(self._data)


class GPU(GenericInterface):
    """jtop/core/gpu.py GPU."""


class Memory(GenericInterface):
    """jtop/core/memory.py Memory."""


class Fan(GenericInterface):
    """jtop/core/fan.py Fan (speed/profile/rpm of the first fan as properties)."""

    @property
    def speed(self):
        return self._data[list(self._data)[0]]["speed"][0] if self._data else None

    @property
    def profile(self):
        return self._data[list(self._data)[0]]["profile"] if self._data else None


class JetsonClocks(object):
    """jtop/core/jetson_clocks.py JetsonClocks: truthy when jetson_clocks is running."""

    def __init__(self, controller):
        self._controller = controller
        self._enable = False
        self._thread = ""
        self._boot = False
        self._config = False

    def _update(self, jc_status):
        self._enable = jc_status["enable"]
        self._thread = jc_status["thread"]
        self._config = jc_status["config"]
        self._boot = jc_status["boot"]

    @property
    def boot(self):
        return self._boot

    @property
    def status(self):
        return "running" if self._enable else self._thread

    def is_config(self):
        return self._config

    def __bool__(self):
        return self._enable

    __nonzero__ = __bool__

    def __eq__(self, other):
        if isinstance(other, bool):
            return self._enable == other
        if isinstance(other, JetsonClocks):
            return self._enable == other._enable
        return False

    def __repr__(self):
        return str(self._enable)


class NVPModel(object):
    """jtop/core/nvpmodel.py NVPModel: name, id, models, status."""

    def __init__(self, controller, nvpmodel):
        self._controller = controller
        self._nvp_models = nvpmodel["models"]
        self._nvp_default = nvpmodel["default"]
        self._status = []
        self._running = False
        self._nvpmodel_now = {}

    def _update(self, nvp_status):
        self._status = nvp_status["status"]
        self._running = nvp_status["thread"]
        self._nvpmodel_now = nvp_status["model"]

    def is_running(self):
        return self._running

    @property
    def id(self):
        return self._nvpmodel_now["id"]

    @property
    def name(self):
        return self._nvpmodel_now["name"]

    @property
    def status(self):
        return self._status

    @property
    def models(self):
        return self._nvp_models

    def get_default(self):
        return self._nvp_default

    def __eq__(self, other):
        if isinstance(other, int):
            return self._nvpmodel_now["id"] == other
        if isinstance(other, str):
            return self._nvpmodel_now["name"] == other
        if isinstance(other, NVPModel):
            return self._nvpmodel_now["id"] == other._nvpmodel_now["id"]
        return False

    def __repr__(self):
        return self._nvpmodel_now["name"]


class jtop(object):
    """jtop/jtop.py jtop (a Thread in jetson-stats: start() may be called once)."""

    def __init__(self, interval=1.0):
        self.version_text, self.version = _version()
        self.board_name = os.environ.get("FAKE_JTOP_BOARD", "nano")
        self._interval = float(interval)
        self._stats = {}
        self._error = None
        self._running = False
        self._started = False
        self._gpu, self._memory, self._fan = GPU(), Memory(), Fan()
        self._jetson_clocks = None
        self._nvpmodel = None
        self._board = {}
        self.start_calls = 0
        self.close_calls = 0
        INSTANCES.append(self)

    def start(self):
        self.start_calls += 1
        if self._started:
            raise RuntimeError("threads can only be started once")  # threading.Thread.start
        service = os.environ.get("FAKE_JTOP_SERVICE", "up")
        restart = ("sudo jtop --install-service" if self.version >= (7, 0) else "sudo systemctl restart jtop.service")
        if service == "down":
            raise JtopException("The jtop.service is not active. Please run:\n" + restart)
        if service == "denied":
            raise JtopException("I can't access jtop.service.\nPlease logout or reboot this board.")
        data = _boards.BOARDS[self.board_name](self.version)
        if os.environ.get("FAKE_JTOP_POWER", "ina3221") == "none":
            data["power"] = {}
        init = data.pop("init")
        self._server_interval = self._interval
        self._board["hardware"] = init["board"]["hardware"]
        self._gpu._initialize(None)
        self._memory._initialize(None, {})
        self._fan._initialize(None, {})
        if init["jc"]:
            self._jetson_clocks = JetsonClocks(None)
        if "nvpmodel" in init:
            self._nvpmodel = NVPModel(None, init["nvpmodel"])
        self._get_data(data)
        self._running = True
        self._started = True

    def _get_data(self, data):
        self._stats = data
        self._gpu._update(self._stats["gpu"])
        self._memory._update(self._stats["mem"])
        self._fan._update(self._stats["fan"])
        if "jc" in self._stats:
            self._jetson_clocks._update(self._stats["jc"])
        if "nvp" in self._stats:
            self._nvpmodel._update(self._stats["nvp"])

    def lose_connection(self, exc=None):
        """What run() stores when _get_data fails (jtop.py: 'Lost connection with jtop server' on EOFError)."""
        self._error = (JtopException, exc or JtopException("Lost connection with jtop server"), None)

    def ok(self, spin=False):
        if self._error:
            _, value, _ = self._error
            raise value
        return self._running

    def close(self):
        self.close_calls += 1
        self._running = False

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        return exc_tb is None

    @property
    def interval(self):
        return self._server_interval

    @property
    def board(self):
        return self._board

    @property
    def engine(self):
        return self._stats.get("engines", {})

    @property
    def fan(self):
        return self._fan

    @property
    def nvpmodel(self):
        return self._nvpmodel

    @property
    def jetson_clocks(self):
        return self._jetson_clocks

    @property
    def memory(self):
        return self._memory

    @property
    def cpu(self):
        return self._stats["cpu"]

    @property
    def processes(self):
        return self._stats["processes"]

    @property
    def gpu(self):
        return self._gpu

    @property
    def power(self):
        return self._stats["power"]

    @property
    def temperature(self):
        return self._stats["temperature"]

    @property
    def uptime(self):
        return timedelta(seconds=self._stats["uptime"])

    @property
    def stats(self):
        """jtop/jtop.py jtop.stats, line for line (identical in 4.2.12 and 7.2.0)."""
        stats = {"time": datetime.now(), "uptime": self.uptime}
        for idx, cpu in enumerate(self.cpu["cpu"]):
            stats["CPU{idx}".format(idx=idx + 1)] = 100 - int(cpu["idle"]) if cpu["online"] else "OFF"
        tot_ram = self.memory["RAM"]["tot"]
        stats["RAM"] = self.memory["RAM"]["used"] / tot_ram if tot_ram > 0 else 0
        tot_swap = self.memory["SWAP"]["tot"]
        stats["SWAP"] = self.memory["SWAP"]["used"] / tot_swap if tot_swap > 0 else 0
        if "EMC" in self.memory:
            stats["EMC"] = self.memory["EMC"]["val"]
        if "IRAM" in self.memory:
            tot_iram = self.memory["IRAM"]["tot"]
            stats["IRAM"] = float(self.memory["IRAM"]["used"]) / tot_iram if tot_iram > 0 else 0
        for idx, gpu in enumerate(self.gpu.values()):
            gpu_name = "GPU" if idx == 0 else "GPU{idx}".format(idx=idx)
            stats[gpu_name] = gpu["status"]["load"]
        for group in self.engine:
            for name, engine in self.engine[group].items():
                stats[name] = engine["cur"] if engine["online"] else "OFF"
        for name, fan in self.fan.items():
            for idx, speed in enumerate(fan["speed"]):
                stats["Fan {name}{idx}".format(idx=idx, name=name)] = speed
        for temp in self.temperature:
            stats["Temp {name}".format(name=temp)] = self.temperature[temp]["temp"]
        if self.power:
            for name, rail in self.power["rail"].items():
                stats["Power {name}".format(name=name)] = rail["power"]
            stats["Power TOT"] = self.power["tot"]["power"]
        if self.jetson_clocks is not None:
            stats["jetson_clocks"] = "ON" if self.jetson_clocks else "OFF"
        if self.nvpmodel is not None:
            stats["nvp model"] = self.nvpmodel.name
        return stats

    def mutate(self, change):
        """Test hook: change(data) edits a deep copy of what the service sent; the client then reads it."""
        data = copy.deepcopy(self._stats)
        change(data)
        self._get_data(data)
