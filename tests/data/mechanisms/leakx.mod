: Passive leak of a test cell, written for luigi_emodel's tests.
NEURON {
    SUFFIX leakx
    NONSPECIFIC_CURRENT il
    RANGE gleakxbar, el
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER { gleakxbar = 1e-5 (S/cm2) el = -70 (mV) }
ASSIGNED { v (mV) il (mA/cm2) }
BREAKPOINT { il = gleakxbar * (v - el) }
