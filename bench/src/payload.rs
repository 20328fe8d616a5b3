//! Realistic bodies: an LT profile of about 2 KiB, LINA consents and withdrawals.

/// A full LT profile (about 2 KiB) for applicant `n`.
pub fn lt_profile(n: u64) -> String {
    lt_profile_with_status(n, "new")
}

pub fn lt_profile_with_status(n: u64, status: &str) -> String {
    format!(
        r#"{{"mydatashare_user_id":"bench-{n:08}","status":"{status}","shared_at":"2026-11-20T08:14:03Z",
"email":"hakija{n}@example.fi","first_name":"Aino","last_name":"Korhonen","phone":"+358 40 123 4567","language":"fi",
"location":{{"municipality":"Tampere","willing_to_relocate":false}},
"desired_jobs":["Rakennustyöntekijä","Raudoittaja","Työnjohtaja","Kirvesmies"],
"work_experience":[{{"employer":"Rakennus Oy","title":"Kirvesmies","start":"2019-03","end":"2024-06","description":"Muottityöt, raudoitus ja betonointi asuinkerrostalokohteissa."}},
{{"employer":"Betoni Ky","title":"Raudoittaja","start":"2024-08","end":null,"description":"Raudoitustyöt teollisuus- ja liikerakennuksissa, työmaan perehdytykset."}},
{{"employer":"Talo ja Perustus Oy","title":"Rakennusmies","start":"2016-05","end":"2019-02","description":"Perustustyöt, muottien purku, työmaan siisteys ja turvallisuus."}}],
"education":[{{"institution":"Tredu","degree":"Talonrakentajan perustutkinto","year":2018}},{{"institution":"Tampereen lukio","degree":"Ylioppilas","year":2014}}],
"certificates":[{{"name":"Työturvallisuuskortti","valid_until":"2029-02-28","verified":true}},{{"name":"Tulityökortti","valid_until":"2027-05-31","verified":true}},
{{"name":"Valttikortti","verified":true}},{{"name":"Ensiapu EA1","valid_until":"2028-01-31","verified":true}}],
"languages":[{{"language":"fi","level":"native"}},{{"language":"en","level":"B2"}},{{"language":"sv","level":"A2"}}],
"driving_licences":["B","C1"],
"free_text":"Etsin vakituista työtä Pirkanmaalta. Äidinkieli suomi; kokemusta myös työmaan siivouksesta ja nostureiden merkinannosta. Olen täsmällinen, oma-aloitteinen ja tottunut työskentelemään sekä itsenäisesti että osana tiimiä. Voin aloittaa kahden viikon varoitusajalla."}}"#
    )
}

pub fn lt_revocation(n: u64) -> String {
    format!(r#"{{"mydatashare_user_id":"bench-{n:08}","status":"revoked"}}"#)
}

pub const STORE: &str = "48138367-3eba-4772-b2bf-6bbd11840efb";

pub fn lina_consent(n: u64) -> String {
    format!(
        r#"{{"webhook":"{STORE}","userUuid":"{}","userVorname":"Jürgen","userName":"Weiß-Großmann","userEmail":"j{n}@example.de","bereich":"Küche"}}"#,
        lina_user(n)
    )
}

pub fn lina_withdrawal(n: u64) -> String {
    format!(
        r#"{{"delete":true,"webhook":"{STORE}","userUuid":"{}"}}"#,
        lina_user(n)
    )
}

fn lina_user(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0d1e_2f3a_4b5c_4d6e_8f70_0000_0000_0000 + u128::from(n))
}
