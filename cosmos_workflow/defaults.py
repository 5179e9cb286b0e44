"""The run's defaults, stated once, low in the layers: the settings, the planner, the engines'
configs, the CLI's options and the orchestrator all read them from here. They are the seed's and
Cosmos-Transfer1's upsampler's."""

from __future__ import annotations

#: tokens reserved for, and allowed in, the answer
MAX_TOKENS = 300
#: the model's context: prompt, images and answer
MAX_MODEL_LEN = 4096
#: the long side of the frames sent, in pixels
MAX_RESOLUTION = 480
#: frames sent per video
NUM_FRAMES = 2
#: sampling
TEMPERATURE = 0.6
TOP_P = 1.0
