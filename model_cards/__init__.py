"""Model card templates (Jinja), shipped inside hf_distil as hf_distil.model_cards."""
