"""The scoring path that training, export and ``birdsweep infer`` share.

- :mod:`~birdsweep.scoring.stream`: recordings read as windows, a few at a time;
- :mod:`~birdsweep.scoring.shifts`: test-time shifts (config group ``tta``);
- :mod:`~birdsweep.scoring.files`: every window of a list of files scored by a model;
- :mod:`~birdsweep.scoring.context`: recording context (config group ``postprocess``);
- :mod:`~birdsweep.scoring.combine`: per-model probabilities combined into window scores;
- :mod:`~birdsweep.scoring.submission`: the ``submission.csv`` table;
- :mod:`~birdsweep.scoring.metric`: the BirdCLEF macro ROC-AUC;
- :mod:`~birdsweep.scoring.manifest`, :mod:`~birdsweep.scoring.session`: an exported ensemble's
  ``manifest.json`` and its ONNX graphs' input and output.

The window layout and ``row_id`` format are defined in :mod:`birdsweep.data.windows` (the data
set's ground truth needs them too). The soundscape AUC that training logs is computed by this
package from the same windows, shifts, context and combination as the ``submission.csv`` of
``birdsweep infer`` (``tests/test_scoring_parity.py``).
"""
