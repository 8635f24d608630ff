"""What Patchbay knows about models: comparable ids, output limits and prices.

``model_ids.py`` (one id per model across providers), ``output_limits.py`` (``max_tokens`` ceilings),
``prices.py`` (the price table and the cost of one request), ``unknown_prices.py`` (models the table lacks).
"""
