"""The playground: a page that streams every decoding step of the served model.

No UI toolkit in these modules but the Gradio side (the last line), which only `app.py` imports; each has
one job:
- `page`: the page model (what the page offers for the served model, its limits, sizes and output names);
- `model`: the served model, loaded once; `errors`: the message for the user (`PlaygroundError`);
- `requests`: a request's values checked once into a `Request`;
- `stream`: a request streamed as page updates, at the page's pace (`Pace`);
- `compare`: side by side, two columns of settings; `replay`: the step slider and the play button;
- `pictures`: what a step and a result show; `texts`: what the page and its API say;
- Gradio: `transport` (how updates travel), `uploads`, `endpoints` (the handlers), `controls` (a setting's
  input), `server` (ZeroGPU, queue, launch).
"""

from .compare import COLUMNS, COMPARE_OUTPUTS, check_compare, compare, compare_defaults, compare_parameters, \
    compare_signature
from .errors import PlaygroundError
from .model import MODEL, LazyModel
from .page import (AMUSED_CONTROLS, BRUSH_RADIUS, COMPARE_SETTINGS, CONTROLS, CRITIC_CONTROLS, DISPLAY_SIZE,
                   EDIT_SIZE, LIMITS, MAX_PROMPT_CHARS, NEGATIVE_PROMPT_HELP, OUTPUTS, PAGE_SETTINGS, PASSING,
                   PICTURE_OUTPUTS, RENAMED, REQUEST_SETTINGS, STEP_OUTPUTS, STREAM_SIZE, TIMELINE_SIZE, PageModel,
                   StepSlider, Update, control, critic_noise_acts, display_size, limits, page_defaults, page_model,
                   token_counts, weights_summary)
from .pictures import decoding_pictures, output_folder, result_update, schedule_preview, step_frame, warm_up
from .replay import PLAY_SPEEDS, REPLAY_RUNS, REPLAYS, check_speed, play_next, replay
from .requests import Request, check_prompt, check_request, check_setting, editor_to_image_and_mask, \
    endpoint_signature, painted_mask
from .stream import RESULT_FILES, Pace, frame_seconds, generate, inpaint, stream_updates, superres

__all__ = ["AMUSED_CONTROLS", "BRUSH_RADIUS", "COLUMNS", "COMPARE_OUTPUTS", "COMPARE_SETTINGS", "CONTROLS",
           "CRITIC_CONTROLS", "DISPLAY_SIZE", "EDIT_SIZE", "LIMITS", "MAX_PROMPT_CHARS", "MODEL",
           "NEGATIVE_PROMPT_HELP", "OUTPUTS", "PAGE_SETTINGS", "PASSING", "PICTURE_OUTPUTS", "PLAY_SPEEDS", "RENAMED",
           "REPLAYS", "REPLAY_RUNS", "REQUEST_SETTINGS", "RESULT_FILES", "STEP_OUTPUTS", "STREAM_SIZE", "TIMELINE_SIZE",
           "LazyModel", "Pace", "PageModel", "PlaygroundError", "Request", "StepSlider", "Update", "check_compare",
           "check_prompt", "check_request", "check_setting", "check_speed", "compare", "compare_defaults",
           "compare_parameters", "compare_signature", "control", "critic_noise_acts", "decoding_pictures",
           "display_size", "editor_to_image_and_mask", "endpoint_signature", "frame_seconds", "generate", "inpaint",
           "limits", "output_folder", "page_defaults", "page_model", "painted_mask", "play_next", "replay",
           "result_update", "schedule_preview", "step_frame", "stream_updates", "superres", "token_counts", "warm_up",
           "weights_summary"]
