COMMENT
Calcium pump with a first-order decay, written for luigi_emodel's tests.
It reads ica and writes cai: the parser must report "cai" as a concentration.
ENDCOMMENT
NEURON {
    SUFFIX cadynx
    USEION ca READ ica WRITE cai
    RANGE decay, gamma
}
UNITS { (mA) = (milliamp) (mM) = (milli/liter) (um) = (micron) FARADAY = (faraday) (coulomb) }
PARAMETER { decay = 80 (ms) gamma = 0.05 depth = 0.1 (um) minCai = 1e-4 (mM) }
ASSIGNED { ica (mA/cm2) }
STATE { cai (mM) }
BREAKPOINT { SOLVE states METHOD cnexp }
DERIVATIVE states { cai' = -(10000)*(ica*gamma/(2*FARADAY*depth)) - (cai - minCai)/decay }
