"""semqa dashboard: compare the particle size distribution of a generic with its RLD.

Run with ``semqa dashboard`` (or ``streamlit run dashboard/app.py``). The page only wires
widgets to :mod:`dashboard.inputs` (reading lots), :mod:`dashboard.runner` (analysis,
caching) and :mod:`dashboard.sections` (showing results).
"""

from __future__ import annotations

import streamlit as st

from dashboard import sections
from dashboard.config import load_settings
from dashboard.runner import run_comparison
from semqa.analysis import AnalysisConfig
from semqa.errors import SemqaError

st.set_page_config(page_title="semqa — PSD comparison", page_icon="🔬", layout="wide")
settings = load_settings()

st.title("Particle size comparison: reference (RLD) and generic")
st.caption(
    "Each image is one unit of its lot. Particles are segmented, sized by equivalent circular "
    "diameter in µm, and the two products compared by population bioequivalence on D50 and span."
)

options = sections.sidebar(settings)
ref_col, test_col = st.columns(2)
with ref_col:
    reference = sections.product_input("reference", "Reference product (RLD)", settings, options.pixel_size_um)
with test_col:
    test = sections.product_input("test", "Test product (generic)", settings, options.pixel_size_um)

config = AnalysisConfig(n_bootstrap=settings.n_bootstrap, roi=options.roi, detect_databar=options.detect_databar)
ready = bool(reference.lots) and bool(test.lots) and options.roi_error is None
key = sections.inputs_key(reference.lots, test.lots, config, options, settings) if ready else None
if st.button("Compare products", type="primary", disabled=not ready, key="compare"):
    st.session_state["compared"] = key
if not ready:
    st.info("Give both products at least one lot with readable images to compare them.")
elif st.session_state.get("compared") is not None:
    if st.session_state["compared"] != key:
        st.info("The inputs changed since the last comparison: press **Compare products** again.")
    else:
        try:
            report = run_comparison(
                reference.lots, test.lots, config, options.model, settings,
                uploads={**reference.uploads, **test.uploads}, pixel_size_um=options.pixel_size_um,
                segmenter=options.segmenter,
            )
        except SemqaError as exc:  # bad input, or the service unreachable / failing
            st.error(f"The comparison could not run: {exc}")
        else:
            sections.results(key, report, reference.lots, test.lots, config, options, settings)
