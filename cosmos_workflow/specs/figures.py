"""The figures of one result: the frames the model saw, their sizes, the token counts and what
the planner changed, declared once for everything that holds them.

Three models carry these figures: the run's record (:class:`~cosmos_workflow.specs.results.UpsampleRecord`,
a journal line and an output entry), a spec's ``upsampling_params``
(:class:`~cosmos_workflow.specs.prompt_spec.UpsamplingParams`) and the review page's shot
(``report.Shot``). Each inherits :class:`ResultFigures`, so a figure has one type, one rule and
one description, and moving a result from one to another is one call (:meth:`ResultFigures.figures`).

The files these models write keep their key order: pydantic orders a model's fields by its bases,
last base first, so a model lists the fields that come before the figures in a base after
:class:`ResultFigures` and those that follow them in a base before it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

#: a count or a size: never negative. The committed PromptSpec schema, older than this rule, says
#: ``integer`` without a minimum; the JSON schema stays that, so the published file is unchanged.
Count = Annotated[int, Field(ge=0), WithJsonSchema({"type": "integer"})]


class ResultFigures(BaseModel):
    """What one request sent and got back, in numbers: frames, sizes, tokens, plan changes."""

    model_config = ConfigDict(extra="forbid")

    frames: Count = 0
    frame_indices: list[Count] = Field(default_factory=list)
    width: Count | None = Field(None, description="frame width sent to the model")
    height: Count | None = Field(None, description="frame height sent to the model")
    source_width: Count | None = None
    source_height: Count | None = None
    prompt_tokens: Count = 0
    image_tokens: Count = 0
    text_tokens: Count = 0
    completion_tokens: Count = 0
    max_tokens: Count = 0
    max_model_len: Count = 0
    finish_reason: str | None = None
    plan_changes: list[str] = Field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """These figures alone, by field name: what another holder of them is built from."""
        return self.model_dump(include=set(ResultFigures.model_fields))
