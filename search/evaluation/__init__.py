"""The clinical evaluation of a train-final model (`cxrtune evaluate`, and train-final's own test scoring).

`clinical.evaluate_model` (model + prepared data -> an evaluation folder) predicts and hands arrays to
`figures.evaluate_predictions`, which fits temperatures (`calibration`) and thresholds (`operating_points`)
on validation predictions and computes discrimination (`clinical_metrics`), calibration, operating points
and subgroup gaps (`subgroups`); `external` maps another taxonomy's labels onto the model's categories;
`model_card` writes the reviewer's summary. `auc` holds the AUC and bootstrap statistics these and the
search's own uncertainty figures share. No module here imports TensorFlow at import time.
"""
