COMMENT
Kmx.mod -- slow, non-inactivating M-type (KCNQ-like) potassium current.
Responsible for spike-frequency adaptation in the example cell.

Example mechanism of the luigi_emodel example cell (configs/example).
ik = gKmxbar * m * (v - ek). Boltzmann steady state (half-activation
-25 mV, slope 6 mV: almost closed below -55 mV, so it is mainly recruited by
spikes) and an asymmetric bell-shaped time constant: fast activation during
spikes, slow deactivation between them.

Units: gKmxbar in S/cm2 (exposed by NEURON as gKmxbar_Kmx), v and ek in mV,
ik in mA/cm2, time constant in ms.
Temperature: the time constant is given at tref = 24 degC and scaled by
q10^((celsius - tref)/10) with q10 = 2.3. At celsius = 34 (example model):
tau ~ 18 ms at +20 mV, ~60 ms at 0 mV, ~190 ms at -40 mV, ~125 ms at -65 mV.
ENDCOMMENT

NEURON {
    SUFFIX Kmx
    USEION k READ ek WRITE ik
    RANGE gKmxbar, gKmx
    GLOBAL mvhalf, mk, taumax, tslope_dep, tslope_hyp, q10, tref
}

UNITS {
    (mV) = (millivolt)
    (mA) = (milliamp)
    (S) = (siemens)
}

PARAMETER {
    gKmxbar = 0.001 (S/cm2)
    mvhalf = -25 (mV)      : half-activation
    mk = 6 (mV)            : slope
    taumax = 400 (ms)      : time-constant scale at tref
    tslope_dep = 15 (mV)   : tau decreases quickly with depolarisation (fast activation during spikes)
    tslope_hyp = 40 (mV)   : ... and slowly with hyperpolarisation (slow deactivation between spikes)
    q10 = 2.3
    tref = 24 (degC)
}

ASSIGNED {
    v (mV)
    ek (mV)
    celsius (degC)
    ik (mA/cm2)
    gKmx (S/cm2)
    minf
    mtau (ms)
}

STATE {
    m
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    gKmx = gKmxbar * m
    ik = gKmx * (v - ek)
}

INITIAL {
    rates(v)
    m = minf
}

DERIVATIVE states {
    rates(v)
    m' = (minf - m) / mtau
}

PROCEDURE rates(vm (mV)) {
    LOCAL qt
    qt = q10^((celsius - tref) / 10 (degC))
    minf = 1 / (1 + exp(-(vm - mvhalf) / mk))
    mtau = (2 (ms) + 2 * taumax / (exp((vm - mvhalf) / tslope_dep) + exp(-(vm - mvhalf) / tslope_hyp))) / qt
}
