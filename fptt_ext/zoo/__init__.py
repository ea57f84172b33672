"""Model zoo: the papers' network architectures (``srnn``: recurrent spiking nets).

A registry (``create_model``, model cards) will live here; for now import the
builders from their modules, e.g. ``from fptt_ext.zoo.srnn import addtask_model``.
"""
