"""Records: batch items (the seed's input format), results (its output format), PromptSpecs."""
