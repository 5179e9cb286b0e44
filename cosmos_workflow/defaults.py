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

#: the tokens an answer may have for the generator's text encoder (T5's, Reason1's) when one is
#: given: Cosmos-Transfer1's T5 and Predict2.5's Reason1 encoder both stop at 512
ENCODER_LIMIT = 512

#: Cosmos-Predict2's prompt refiner (Cosmos-Reason1-7B), in our own words: the same intent as its
#: system prompt, not its text
REFINER_SYSTEM_PROMPT = (
    "You turn a user's short prompt for a video generation model into a richer one. Rewrite the "
    "prompt as a single detailed paragraph of about 80 to 100 words that describes the video "
    "faithfully: the subjects and what they do, the setting, the lighting and colours, and how "
    "the camera frames and follows the scene. Keep everything the user asked for and add nothing "
    "that contradicts it or the image or video you are shown. Answer with the paragraph only: "
    "no title, list, preamble or quotation marks."
)

#: ``--preset NAME``: settings a preset gives, below the config file, environment and flags
PRESETS: dict[str, dict[str, object]] = {
    "predict2-refiner": {"temperature": 0.0, "max_tokens": 512, "ascii_only": True},
}
#: the system prompt each preset gives (``--system-prompt-file`` replaces it)
PRESET_SYSTEM_PROMPTS: dict[str, str] = {"predict2-refiner": REFINER_SYSTEM_PROMPT}
